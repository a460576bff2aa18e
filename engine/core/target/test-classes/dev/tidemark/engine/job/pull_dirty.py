# Pull-mode incremental backup client, as libvirt-based backup tools do it with libnbd:
# ask the fleecing export for one qemu:dirty-bitmap context, walk its extents, and read
# only the dirty ones into the previous full copy.  Prints the bytes fetched.
# Usage: python3 pull_dirty.py URI CONTEXT FILE
import sys
import nbd

uri, context, path = sys.argv[1:4]
h = nbd.NBD()
h.add_meta_context(context)
h.connect_uri(uri)
if not h.can_meta_context(context):
    sys.exit("server did not agree to " + context)
size = h.get_size()
extents = []


def collect(metacontext, offset, entries, err):
    if metacontext == context:
        for i in range(0, len(entries), 2):
            extents.append((entries[i], entries[i + 1]))
    return 0


fetched = 0
offset = 0
with open(path, "r+b") as out:
    while offset < size:
        del extents[:]
        h.block_status(min(size - offset, 1 << 30), offset, collect)
        if not extents:
            sys.exit("no extents at %d" % offset)
        for length, flags in extents:
            length = min(length, size - offset)
            if flags & 1:
                done = 0
                while done < length:
                    n = min(length - done, 8 << 20)
                    out.seek(offset + done)
                    out.write(h.pread(n, offset + done))
                    done += n
                fetched += length
            offset += length
            if offset >= size:
                break
h.shutdown()
print(fetched)
