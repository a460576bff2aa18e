package dev.tidemark.bitmap;

/**
 * Why a bitmap file or argument was refused; immutable and safe to share between threads.
 *
 * <p>Each value is a stable code that tools and tests can match on, carried by
 * {@link BitmapFileException} (problems with a file) and {@link BitmapArgumentException} (problems
 * with an argument).
 */
public enum BitmapError
{
    /** The file is shorter than its header or its data area says it must be. */
    TRUNCATED,
    /** The file does not start with the bitmap magic. */
    BAD_MAGIC,
    /** The file's major format version is one this code does not know. */
    UNSUPPORTED_VERSION,
    /** The header's CRC32C does not match its bytes. */
    BAD_CHECKSUM,
    /** The granularity is not a power of two between 512 B and 2 GiB. */
    BAD_GRANULARITY,
    /** The name is empty, longer than 1023 bytes of UTF-8, or not valid UTF-8. */
    BAD_NAME,
    /** A size is negative or too large, or the header's sizes contradict each other. */
    BAD_SIZE,
    /** An offset or length lies outside the disk. */
    OUT_OF_RANGE,
    /** Two bitmaps that must track the same disk size do not. */
    SIZE_MISMATCH,
    /** The header's area offsets or lengths are not the ones this format version lays out. */
    BAD_LAYOUT,
    /** Another process (or another open in this process) holds the file. */
    LOCKED,
    /** The file already exists where a new bitmap was to be created. */
    ALREADY_EXISTS
}
