package dev.tidemark.io.vhost;

/**
 * Constants of the vhost-user protocol (QEMU's {@code docs/interop/vhost-user.rst}), of split virtqueues and of
 * virtio-blk (virtio 1.2, section 5.2); constants only, so safe for any thread.
 */
public final class VhostUser
{
    // ---- message header: u32 request, u32 flags, u32 size; then the payload

    /** Header bytes before every payload. */
    public static final int HEADER_SIZE = 12;
    /** Largest payload Tidemark accepts (the biggest known message is a memory table of 8 regions). */
    public static final int MAX_PAYLOAD = 4096;
    /** Flags: protocol version 1 in the low two bits. */
    public static final int FLAG_VERSION = 0x1;
    /** Flags: this message is a reply. */
    public static final int FLAG_REPLY = 0x4;
    /** Flags: the front end wants a u64 status reply (with {@link #PROTOCOL_F_REPLY_ACK}). */
    public static final int FLAG_NEED_REPLY = 0x8;

    // ---- front-end requests
    public static final int GET_FEATURES = 1;
    public static final int SET_FEATURES = 2;
    public static final int SET_OWNER = 3;
    public static final int RESET_OWNER = 4;
    public static final int SET_MEM_TABLE = 5;
    public static final int SET_LOG_BASE = 6;
    public static final int SET_LOG_FD = 7;
    public static final int SET_VRING_NUM = 8;
    public static final int SET_VRING_ADDR = 9;
    public static final int SET_VRING_BASE = 10;
    public static final int GET_VRING_BASE = 11;
    public static final int SET_VRING_KICK = 12;
    public static final int SET_VRING_CALL = 13;
    public static final int SET_VRING_ERR = 14;
    public static final int GET_PROTOCOL_FEATURES = 15;
    public static final int SET_PROTOCOL_FEATURES = 16;
    public static final int GET_QUEUE_NUM = 17;
    public static final int SET_VRING_ENABLE = 18;
    public static final int GET_CONFIG = 24;
    public static final int SET_CONFIG = 25;

    /** SET_VRING_KICK/CALL/ERR payload: bit 8 says no descriptor was passed. */
    public static final long VRING_NOFD_MASK = 0x100;
    /** SET_VRING_KICK/CALL/ERR payload: the queue index. */
    public static final long VRING_IDX_MASK = 0xff;

    // ---- feature bits
    /** The device offers GET/SET_PROTOCOL_FEATURES; rings start disabled. */
    public static final int F_PROTOCOL_FEATURES = 30;
    public static final int VIRTIO_F_VERSION_1 = 32;
    public static final int VIRTIO_RING_F_INDIRECT_DESC = 28;
    /** used_event / avail_event: each side says when it next wants to be notified. */
    public static final int VIRTIO_RING_F_EVENT_IDX = 29;

    public static final int PROTOCOL_F_MQ = 0;
    public static final int PROTOCOL_F_REPLY_ACK = 3;
    public static final int PROTOCOL_F_CONFIG = 9;

    public static final int VIRTIO_BLK_F_SEG_MAX = 2;
    public static final int VIRTIO_BLK_F_RO = 5;
    public static final int VIRTIO_BLK_F_BLK_SIZE = 6;
    public static final int VIRTIO_BLK_F_FLUSH = 9;
    public static final int VIRTIO_BLK_F_TOPOLOGY = 10;
    public static final int VIRTIO_BLK_F_CONFIG_WCE = 11;
    public static final int VIRTIO_BLK_F_MQ = 12;
    public static final int VIRTIO_BLK_F_DISCARD = 13;
    public static final int VIRTIO_BLK_F_WRITE_ZEROES = 14;

    // ---- split virtqueue
    public static final int VRING_DESC_F_NEXT = 1;
    public static final int VRING_DESC_F_WRITE = 2;
    public static final int VRING_DESC_F_INDIRECT = 4;
    /** avail->flags: the driver does not want interrupts. */
    public static final int VRING_AVAIL_F_NO_INTERRUPT = 1;
    public static final int MAX_QUEUE_SIZE = 32768;

    // ---- virtio-blk requests
    public static final int VIRTIO_BLK_T_IN = 0;
    public static final int VIRTIO_BLK_T_OUT = 1;
    public static final int VIRTIO_BLK_T_FLUSH = 4;
    public static final int VIRTIO_BLK_T_GET_ID = 8;
    public static final int VIRTIO_BLK_T_DISCARD = 11;
    public static final int VIRTIO_BLK_T_WRITE_ZEROES = 13;
    public static final int VIRTIO_BLK_S_OK = 0;
    public static final int VIRTIO_BLK_S_IOERR = 1;
    public static final int VIRTIO_BLK_S_UNSUPP = 2;
    /** Bytes of the device ID GET_ID returns. */
    public static final int VIRTIO_BLK_ID_BYTES = 20;
    /** Bytes of {@code struct virtio_blk_config} up to and including the write-zeroes fields. */
    public static final int BLK_CONFIG_SIZE = 60;
    /** virtio-blk sectors are always 512 bytes, whatever the logical block size. */
    public static final int SECTOR = 512;

    private VhostUser()
    {
    }
}
