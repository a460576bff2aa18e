package dev.tidemark.engine;

/** The kinds of request the write ring carries; an immutable enum. */
public enum RequestKind
{
    /** Data from a buffer. */
    WRITE,
    /** A range made to read as zeroes. */
    WRITE_ZEROES,
    /** A range the guest no longer needs (it then reads as zeroes). */
    DISCARD,
    /** Make every write completed before it durable. */
    FLUSH,
    /** A transaction or another mark-thread task at a cut. */
    CONTROL;

    /** @return whether the request changes disk content (and so is marked and intercepted). */
    public boolean changesData()
    {
        return this == WRITE || this == WRITE_ZEROES || this == DISCARD;
    }
}
