/**
 * The goals of issue 16, each a figure measured in one bench run against its threshold: the summary
 * table (goal, measured, threshold, met) and an SVG bar chart of the same, hand-written (no dependency).
 */

export type Direction = ">=" | "<=" | "<"

export interface Goal {
  /** what is compared, e.g. "4 KiB: lo-migrate wall rate / peer's" */
  readonly name: string
  readonly measured: number
  readonly threshold: number
  readonly direction: Direction
  /** unit of measured and threshold ("x" for a ratio) */
  readonly unit: string
  /** how the figure was taken, one short phrase */
  readonly how: string
}

export const met = (g: Goal): boolean =>
  g.direction === ">=" ? g.measured >= g.threshold : g.direction === "<=" ? g.measured <= g.threshold : g.measured < g.threshold

/**
 * How far the measurement is from its threshold, as one number for the chart: 1 is the threshold, above
 * 1 is met (measured / threshold for an at-least goal, threshold / measured for an at-most one).
 */
export const attainment = (g: Goal): number =>
  g.direction === ">=" ? g.measured / g.threshold : g.measured <= 0 ? Number.POSITIVE_INFINITY : g.threshold / g.measured

const num = (n: number) => {
  if (!Number.isFinite(n)) return String(n)
  const digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
}
const withUnit = (n: number, unit: string) => unit === "x" ? num(n) : `${num(n)} ${unit}`
const sign = (d: Direction) => d === ">=" ? "≥" : d === "<=" ? "≤" : "<"

/** The markdown summary table. */
export const table = (goals: ReadonlyArray<Goal>): Array<string> => [
  "| goal | measured | threshold | met | how |",
  "|---|---:|---:|---|---|",
  ...goals.map((g) => `| ${g.name} | ${withUnit(g.measured, g.unit)} | ${sign(g.direction)} ${withUnit(g.threshold, g.unit)} | ${met(g) ? "yes" : "**no**"} | ${g.how} |`)
]

const xml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/**
 * A horizontal bar chart: one bar per goal, its length the attainment (1 = the threshold, drawn as a
 * line), green when met, red when not; each bar labelled with the measured value and the threshold.
 * `subtitle` lines carry the run's conditions.
 */
export const svg = (goals: ReadonlyArray<Goal>, title: string, subtitle: ReadonlyArray<string>): string => {
  const labelWidth = 400
  const barWidth = 380
  const width = labelWidth + barWidth + 270
  const rowHeight = 30
  const top = 54 + subtitle.length * 16
  const height = top + goals.length * rowHeight + 52
  const finite = goals.map(attainment).filter(Number.isFinite)
  const scaleMax = Math.min(4, Math.max(2, Math.ceil(Math.max(1, ...finite) * 2) / 2))
  const x = (v: number) => labelWidth + Math.min(v, scaleMax) / scaleMax * barWidth
  const out: Array<string> = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`)
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  out.push(`<text x="12" y="24" font-size="16" font-weight="bold">${xml(title)}</text>`)
  subtitle.forEach((line, i) => out.push(`<text x="12" y="${44 + i * 16}" font-size="11" fill="#555555">${xml(line)}</text>`))
  // grid: 0, 0.5, 1 (the threshold), ... scaleMax
  for (let v = 0; v <= scaleMax + 1e-9; v += 0.5) {
    const gx = x(v).toFixed(1)
    out.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${top + goals.length * rowHeight}" stroke="${v === 1 ? "#000000" : "#dddddd"}" stroke-width="${v === 1 ? 2 : 1}"${v === 1 ? "" : ` stroke-dasharray="3,3"`}/>`)
    out.push(`<text x="${gx}" y="${top + goals.length * rowHeight + 16}" text-anchor="middle" font-size="11" fill="#555555">${num(v)}</text>`)
  }
  out.push(`<text x="${x(1).toFixed(1)}" y="${top - 10}" text-anchor="middle" font-size="11">goal</text>`)
  goals.forEach((g, i) => {
    const y = top + i * rowHeight
    const a = attainment(g)
    const ok = met(g)
    out.push(`<text x="${labelWidth - 8}" y="${y + 19}" text-anchor="end">${xml(g.name)}</text>`)
    out.push(`<rect x="${labelWidth}" y="${y + 6}" width="${Math.max(1, x(a) - labelWidth).toFixed(1)}" height="18" fill="${ok ? "#2e8b57" : "#c0392b"}"/>`)
    const label = `${withUnit(g.measured, g.unit)} (goal ${sign(g.direction)} ${withUnit(g.threshold, g.unit)})${a > scaleMax ? " →" : ""}`
    // a white halo keeps the label readable where it crosses the goal line
    out.push(`<text x="${(x(a) + 6).toFixed(1)}" y="${y + 19}" font-size="12" stroke="#ffffff" stroke-width="4" paint-order="stroke">${xml(label)}</text>`)
  })
  out.push(`<text x="12" y="${height - 12}" font-size="11" fill="#555555">${
    xml("bar: measured relative to the goal (at-least goals: measured / goal; at-most goals: goal / measured); right of the line = met")
  }</text>`)
  out.push("</svg>")
  return out.join("\n") + "\n"
}
