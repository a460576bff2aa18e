package dev.tidemark.io.nbd;

import dev.tidemark.io.IoReason;

/**
 * NBD wire constants (magics, options, reply types, flags, commands, error values); immutable, safe
 * from any thread.
 *
 * <p>Values follow the NBD protocol specification ({@code doc/proto.md}). Error values are the wire
 * values, not the host's errno numbers.
 */
public final class NbdProtocol
{
    /** "NBDMAGIC", the first word the server sends. */
    public static final long INIT_PASSWD = 0x4e42444d41474943L;
    /** "IHAVEOPT", second greeting word and the prefix of every client option. */
    public static final long IHAVEOPT = 0x49484156454F5054L;
    /** Prefix of every option reply. */
    public static final long OPTION_REPLY_MAGIC = 0x0003e889045565a9L;
    /** Compact request magic. */
    public static final int REQUEST_MAGIC = 0x25609513;
    /** Simple reply magic. */
    public static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    /** Structured reply chunk magic. */
    public static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;

    /** Handshake flag: fixed newstyle. */
    public static final int FLAG_FIXED_NEWSTYLE = 0x1;
    /** Handshake flag: no 124 zero bytes after EXPORT_NAME. */
    public static final int FLAG_NO_ZEROES = 0x2;
    /** Client flag: fixed newstyle. */
    public static final int CLIENT_FIXED_NEWSTYLE = 0x1;
    /** Client flag: no zeroes. */
    public static final int CLIENT_NO_ZEROES = 0x2;

    /** Option: export name (old way into transmission). */
    public static final int OPT_EXPORT_NAME = 1;
    /** Option: abort the handshake. */
    public static final int OPT_ABORT = 2;
    /** Option: list exports. */
    public static final int OPT_LIST = 3;
    /** Option: upgrade the connection to TLS. */
    public static final int OPT_STARTTLS = 5;
    /** Option: information about an export. */
    public static final int OPT_INFO = 6;
    /** Option: select an export and enter transmission. */
    public static final int OPT_GO = 7;
    /** Option: structured replies. */
    public static final int OPT_STRUCTURED_REPLY = 8;
    /** Option: list metadata contexts. */
    public static final int OPT_LIST_META_CONTEXT = 9;
    /** Option: select metadata contexts. */
    public static final int OPT_SET_META_CONTEXT = 10;
    /** Option: extended headers (not supported). */
    public static final int OPT_EXTENDED_HEADERS = 11;

    /** Option reply: acknowledgement, always with an empty payload. */
    public static final int REP_ACK = 1;
    /** Option reply: one export in a LIST answer. */
    public static final int REP_SERVER = 2;
    /** Option reply: one information item of INFO/GO. */
    public static final int REP_INFO = 3;
    /** Option reply: one metadata context. */
    public static final int REP_META_CONTEXT = 4;
    /** Option error: unsupported option. */
    public static final int REP_ERR_UNSUP = 0x80000001;
    /** Option error: forbidden by policy. */
    public static final int REP_ERR_POLICY = 0x80000002;
    /** Option error: malformed option. */
    public static final int REP_ERR_INVALID = 0x80000003;
    /** Option error: platform lacks support. */
    public static final int REP_ERR_PLATFORM = 0x80000004;
    /** Option error: the server requires TLS first. */
    public static final int REP_ERR_TLS_REQD = 0x80000005;
    /** Option error: no such export. */
    public static final int REP_ERR_UNKNOWN = 0x80000006;
    /** Option error: server shutting down. */
    public static final int REP_ERR_SHUTDOWN = 0x80000007;
    /** Option error: request too big. */
    public static final int REP_ERR_TOO_BIG = 0x80000009;

    /** Info type: size and transmission flags. */
    public static final int INFO_EXPORT = 0;
    /** Info type: canonical name. */
    public static final int INFO_NAME = 1;
    /** Info type: description. */
    public static final int INFO_DESCRIPTION = 2;
    /** Info type: block size constraints. */
    public static final int INFO_BLOCK_SIZE = 3;

    /** Transmission flag: flags are valid (always set). */
    public static final int TF_HAS_FLAGS = 0x0001;
    /** Transmission flag: read-only export. */
    public static final int TF_READ_ONLY = 0x0002;
    /** Transmission flag: FLUSH supported. */
    public static final int TF_SEND_FLUSH = 0x0004;
    /** Transmission flag: FUA supported. */
    public static final int TF_SEND_FUA = 0x0008;
    /** Transmission flag: rotational medium hint. */
    public static final int TF_ROTATIONAL = 0x0010;
    /** Transmission flag: TRIM supported. */
    public static final int TF_SEND_TRIM = 0x0020;
    /** Transmission flag: WRITE_ZEROES supported. */
    public static final int TF_SEND_WRITE_ZEROES = 0x0040;
    /** Transmission flag: DF supported on READ. */
    public static final int TF_SEND_DF = 0x0080;
    /** Transmission flag: flush and FUA are consistent across connections. */
    public static final int TF_CAN_MULTI_CONN = 0x0100;
    /** Transmission flag: CACHE supported. */
    public static final int TF_SEND_CACHE = 0x0400;
    /** Transmission flag: FAST_ZERO supported. */
    public static final int TF_SEND_FAST_ZERO = 0x0800;

    /** Command: read. */
    public static final int CMD_READ = 0;
    /** Command: write. */
    public static final int CMD_WRITE = 1;
    /** Command: disconnect. */
    public static final int CMD_DISC = 2;
    /** Command: flush. */
    public static final int CMD_FLUSH = 3;
    /** Command: trim. */
    public static final int CMD_TRIM = 4;
    /** Command: cache (prefetch hint). */
    public static final int CMD_CACHE = 5;
    /** Command: write zeroes. */
    public static final int CMD_WRITE_ZEROES = 6;
    /** Command: block status. */
    public static final int CMD_BLOCK_STATUS = 7;

    /** Command flag: force unit access. */
    public static final int CMD_FLAG_FUA = 0x1;
    /** Command flag: keep the range allocated (WRITE_ZEROES). */
    public static final int CMD_FLAG_NO_HOLE = 0x2;
    /** Command flag: don't fragment the read reply. */
    public static final int CMD_FLAG_DF = 0x4;
    /** Command flag: one extent only (BLOCK_STATUS). */
    public static final int CMD_FLAG_REQ_ONE = 0x8;
    /** Command flag: fail fast rather than write zeroes slowly (WRITE_ZEROES). */
    public static final int CMD_FLAG_FAST_ZERO = 0x10;

    /** Structured reply flag: last chunk. */
    public static final int REPLY_FLAG_DONE = 0x1;
    /** Chunk type: none. */
    public static final int REPLY_TYPE_NONE = 0;
    /** Chunk type: data at an offset. */
    public static final int REPLY_TYPE_OFFSET_DATA = 1;
    /** Chunk type: hole at an offset. */
    public static final int REPLY_TYPE_OFFSET_HOLE = 2;
    /** Chunk type: block status. */
    public static final int REPLY_TYPE_BLOCK_STATUS = 5;
    /** Chunk type: error. */
    public static final int REPLY_TYPE_ERROR = 0x8001;
    /** Chunk type: error at an offset. */
    public static final int REPLY_TYPE_ERROR_OFFSET = 0x8002;

    /** Success. */
    public static final int OK = 0;
    /** Error: operation not permitted. */
    public static final int EPERM = 1;
    /** Error: input/output error. */
    public static final int EIO = 5;
    /** Error: out of memory. */
    public static final int ENOMEM = 12;
    /** Error: invalid argument. */
    public static final int EINVAL = 22;
    /** Error: no space left. */
    public static final int ENOSPC = 28;
    /** Error: value too large. */
    public static final int EOVERFLOW = 75;
    /** Error: not supported. */
    public static final int ENOTSUP = 95;
    /** Error: server shutting down. */
    public static final int ESHUTDOWN = 108;

    /** {@code base:allocation} flag: not allocated. */
    public static final int STATE_HOLE = 1;
    /** {@code base:allocation} flag: reads as zeroes. */
    public static final int STATE_ZERO = 2;
    /** {@code qemu:dirty-bitmap:} flag: dirty. */
    public static final int STATE_DIRTY = 1;

    /** Largest request payload the server accepts and the client sends: 32 MiB. */
    public static final int MAX_PAYLOAD = 32 * 1024 * 1024;
    /** Longest string (name, description, message) allowed on the wire. */
    public static final int MAX_STRING = 4096;

    private NbdProtocol()
    {
    }

    /**
     * @param reason why a request failed.
     * @return the NBD error value a server replies with.
     */
    public static int errorOf(final IoReason reason)
    {
        return switch (reason)
        {
            case INVALID_ARGUMENT -> EINVAL;
            case READ_ONLY -> EPERM;
            case NO_SPACE -> ENOSPC;
            case NOT_SUPPORTED -> ENOTSUP;
            case IO_ERROR -> EIO;
        };
    }

    /**
     * @param error an NBD error value from a server's reply.
     * @return the reason it stands for; {@link IoReason#IO_ERROR} for values without one of their own.
     */
    public static IoReason reasonOf(final int error)
    {
        switch (error)
        {
            case EINVAL: return IoReason.INVALID_ARGUMENT;
            case EPERM: return IoReason.READ_ONLY;
            case ENOSPC: return IoReason.NO_SPACE;
            case ENOTSUP: return IoReason.NOT_SUPPORTED;
            default: return IoReason.IO_ERROR;
        }
    }

    /**
     * @param error an NBD error value.
     * @return a short name for messages, such as {@code "EINVAL"}.
     */
    public static String errorName(final int error)
    {
        switch (error)
        {
            case OK: return "OK";
            case EPERM: return "EPERM";
            case EIO: return "EIO";
            case ENOMEM: return "ENOMEM";
            case EINVAL: return "EINVAL";
            case ENOSPC: return "ENOSPC";
            case EOVERFLOW: return "EOVERFLOW";
            case ENOTSUP: return "ENOTSUP";
            case ESHUTDOWN: return "ESHUTDOWN";
            default: return "error " + error;
        }
    }

    /**
     * @param command a command type.
     * @return its name for messages.
     */
    public static String commandName(final int command)
    {
        switch (command)
        {
            case CMD_READ: return "READ";
            case CMD_WRITE: return "WRITE";
            case CMD_DISC: return "DISC";
            case CMD_FLUSH: return "FLUSH";
            case CMD_TRIM: return "TRIM";
            case CMD_CACHE: return "CACHE";
            case CMD_WRITE_ZEROES: return "WRITE_ZEROES";
            case CMD_BLOCK_STATUS: return "BLOCK_STATUS";
            default: return "command " + command;
        }
    }
}
