/**
 * What S3 error codes mean, in plain words, for the errors whose server gave no message. Ceph RGW
 * leaves `<Message>` empty (the SDK then says "UnknownError"), and a HEAD's error has no body at all,
 * so without this an operator reads `BadDigest: UnknownError [HTTP 400]`. The codes are those of the
 * S3 API (AWS's error responses), plus the ones RGW adds.
 */
export const s3ErrorMeanings: Readonly<Record<string, string>> = {
  AccessDenied: "the credentials may not do this (bucket policy, user rights)",
  AccountProblem: "the account behind the credentials is not in good standing",
  AllAccessDisabled: "all access to this resource is disabled",
  BadDigest: "the body the server received does not match its Content-MD5: it was damaged on the way",
  BucketAlreadyExists: "the bucket name is taken",
  BucketNotEmpty: "the bucket still holds objects",
  EntityTooLarge: "the body is larger than the server accepts in one request",
  EntityTooSmall: "a part other than the last is below the server's minimum part size (5 MiB on S3)",
  ExpiredToken: "the session token has expired",
  IncompleteBody: "the server received fewer bytes than the Content-Length said",
  InternalError: "the server failed internally",
  InvalidAccessKeyId: "the server knows no such access key",
  InvalidArgument: "the server refused a value of the request",
  InvalidBucketName: "the bucket name is not valid",
  InvalidDigest: "the Content-MD5 header is not a valid MD5",
  InvalidObjectState: "the object is archived (e.g. GLACIER) and must be restored first",
  InvalidPart: "a part named in the completion is missing or its ETag differs",
  InvalidPartOrder: "the parts of the completion are not in ascending order",
  InvalidRange: "the requested range is outside the object",
  InvalidRequest: "the server refused the request as malformed",
  InvalidStorageClass: "the server does not know that storage class",
  InvalidToken: "the session token is malformed or invalid",
  KeyTooLongError: "the object key is too long",
  MalformedXML: "the server could not parse the XML the request sent",
  MethodNotAllowed: "the server does not allow this method on this resource",
  MissingContentLength: "the server needs a Content-Length (RGW 16 refuses aws-chunked bodies this way)",
  NoSuchBucket: "the bucket does not exist",
  NoSuchKey: "no object under this key",
  NoSuchUpload: "the multipart upload does not exist (completed, aborted or expired)",
  NotFound: "no such object or bucket",
  NotImplemented: "the server does not implement this request",
  PermanentRedirect: "the bucket lives at another endpoint or region",
  PreconditionFailed: "a condition of the request (If-Match, …) does not hold",
  QuotaExceeded: "the user's or the bucket's quota on the server is used up",
  RequestTimeTooSkewed: "this machine's clock differs too much from the server's",
  RequestTimeout: "the server waited too long for the request body",
  ServiceUnavailable: "the server is overloaded or down for now",
  SignatureDoesNotMatch: "the signature does not match: wrong secret key, or the request was changed on the way",
  SlowDown: "the server asks for fewer requests per second",
  TooManyBuckets: "the user may not create more buckets",
  TooManyRequests: "the server asks for fewer requests per second",
  UserSuspended: "the user is suspended on the server",
  XAmzContentSHA256Mismatch: "the body the server received does not match its x-amz-content-sha256: it was damaged on the way"
}

/** For an answer without even an error code (a HEAD's error has no body): what its HTTP status means. */
export const s3StatusMeanings: Readonly<Record<number, string>> = {
  400: "the server refused the request as invalid",
  403: "access denied: the credentials or the bucket policy forbid it",
  404: "no such object or bucket",
  405: "the server does not allow this method here",
  409: "the request conflicts with the bucket's or object's state",
  411: "the server needs a Content-Length",
  412: "a condition of the request does not hold",
  416: "the requested range is outside the object",
  429: "the server asks for fewer requests per second",
  500: "the server failed internally",
  501: "the server does not implement this request",
  502: "a proxy in front of the server got no valid answer from it",
  503: "the server is overloaded or down for now",
  504: "a proxy in front of the server timed out waiting for it"
}

/** The SDK's names for an error answer without a code. */
export const isNoCode = (name: string): boolean => name === "Unknown" || name === "UnknownError"

/** What an error answer without a code means, by its status. */
export const statusMeaningOf = (status: number | undefined): string =>
  `${(status === undefined ? undefined : s3StatusMeanings[status]) ?? "an error answer"} (the server sent no error code)`

/** The SDK's stand-ins for "the server said nothing": an empty `<Message>`, no body at all. */
export const isNoMessage = (message: string, code: string): boolean => {
  const m = message.trim()
  return m === "" || m === "UnknownError" || m === "Unknown" || m === code
}

/** `code`'s meaning for an error without a message: the plain words, or that the server said no more. */
export const meaningOf = (code: string): string =>
  `${s3ErrorMeanings[code] ?? "an error code this tool does not know"} (the server sent no message)`
