/*
 * The migration stream codec: Xen's save-image / migration format for an
 * x86 PV guest (xl header, libxl v2, libxc v3), written incrementally to any
 * sink and read incrementally from any chunked source.
 *
 *   writeSaveImage(sink, image)            a whole plain save, in one call
 *   new SaveStreamWriter(sink)             the same step by step (live migration,
 *                                          checkpoints)
 *   new StreamParser() .push() .end()      validating incremental reader
 *   readStream(source) / parseImage(bytes) conveniences over it
 *   checkImage(bytes | path | source)      reader + restorability checks
 */
export * from './constants.js';
export { StreamError, type StreamErrorCode, type StreamErrorInfo, type StreamLayer } from './errors.js';
export type * from './records.js';
export {
  SaveStreamWriter,
  writeSaveImage,
  type ChunkSink,
  type SaveImage,
  type StreamFormat,
  type StreamSink,
  type StreamStart,
  type WriteSummary,
} from './writer.js';
export { StreamParser, parseImage, readStream, type ParseStep, type ParserOptions } from './parser.js';
export { ImageChecker, checkImage, type CheckOptions, type CheckResult, type ImageSummary } from './check.js';
export { XENPORT_META_VERSION, encodeXlHeader, xenportMetaProblem } from './xl-header.js';
