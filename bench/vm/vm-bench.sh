#!/usr/bin/env bash
# fio inside a guest (4 KiB randwrite QD1 and QD16, 64 KiB randwrite QD16) on Tidemark's vhost-user-blk export,
# Tidemark's NBD export (QEMU's NBD driver) and qemu-storage-daemon's vhost-user-blk export, in one run.
# Prints a markdown table: IOPS, MB/s, and guest CPU time per I/O (fio's usr+sys over the job's I/Os), which is
# what dominates under TCG. Tidemark's disk records into a persistent bitmap throughout.
# Usage: bench/vm/vm-bench.sh [seconds-per-job]   (needs the jar: mvn -pl engine/app -am package -DskipTests)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RT=${1:-10}
K=${TIDEMARK_GUEST_DIR:-/var/cache/tidemark-guest}
[ -s "$K/vmlinuz" ] || "$ROOT/.ci/guest-kernel"
W=$(mktemp -d /var/tmp/tidemark-vmbench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

accel=tcg
if [ -r /dev/kvm ] && qemu-system-x86_64 -accel kvm -M pc -cpu max -m 64M -nodefaults -display none -no-reboot \
    -kernel "$K/vmlinuz" -append "panic=-1 console=ttyS0" -serial null >/dev/null 2>&1; then
  accel=kvm
fi

# ---- initramfs: busybox, virtio modules, fio and its libraries
R=$W/root
mkdir -p "$R"/{bin,dev,proc,sys,tmp,lib/modules,usr/bin}
cp /bin/busybox "$R/bin/busybox"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
  cp "$(find "$K/modules" -name "$m.ko" | head -n 1)" "$R/lib/modules/"
done
cp /usr/bin/fio "$R/usr/bin/fio"
for lib in $(ldd /usr/bin/fio | grep -o '/[^ ]*'); do
  mkdir -p "$R$(dirname "$lib")"
  cp -L "$lib" "$R$lib"
done
cat > "$R/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do insmod /lib/modules/\$m.ko; done
i=0; while [ ! -b /dev/vda ] && [ \$i -lt 200 ]; do sleep 0.1; i=\$((i+1)); done
for job in "4k-qd1 4k 1" "4k-qd16 4k 16" "64k-qd16 64k 16"; do
  set -- \$job
  fio --thread --name=\$1 --filename=/dev/vda --direct=1 --ioengine=libaio --rw=randwrite --bs=\$2 \
    --iodepth=\$3 --size=512M --ramp_time=2 --runtime=$RT --time_based --randrepeat=1 \
    --output-format=json > /tmp/out.json 2>&1
  echo TM-JSON-BEGIN \$1; cat /tmp/out.json; echo TM-JSON-END
done
echo TM-DONE
poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | busybox cpio -o -H newc 2>/dev/null) > "$W/initrd.cpio"

truncate -s 1G "$W/tm.raw" "$W/qsd.raw"

# ---- Tidemark: one daemon with both exports of one disk and a recording persistent bitmap
"$ROOT/tidemark" serve --blockdev "driver=file,node-name=f0,filename=$W/tm.raw" \
  --blockdev driver=raw,node-name=d0,file=f0 \
  --nbd-server "addr.type=unix,addr.path=$W/nbd.sock" --export type=nbd,id=e0,node-name=d0,writable=on \
  --export "type=vhost-user-blk,id=v0,node-name=d0,addr.type=unix,addr.path=$W/tm-vhost.sock,writable=on,num-queues=1" \
  --qmp-socket "$W/qmp.sock" > "$W/serve.log" 2>&1 &
pids+=($!)
qemu-storage-daemon --blockdev "driver=file,node-name=f0,filename=$W/qsd.raw" \
  --export "type=vhost-user-blk,id=v0,node-name=f0,addr.type=unix,addr.path=$W/qsd-vhost.sock,writable=on,num-queues=1" \
  > "$W/qsd.log" 2>&1 &
pids+=($!)
for s in qmp.sock tm-vhost.sock nbd.sock qsd-vhost.sock; do
  for _ in $(seq 600); do [ -S "$W/$s" ] && break; sleep 0.1; done
  [ -S "$W/$s" ] || { echo "no $s: tidemark: $(cat "$W/serve.log") qsd: $(cat "$W/qsd.log")" >&2; exit 1; }
done
python3 - "$W/qmp.sock" <<'PY'
import json, socket, sys, time
for _ in range(100):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); break
    except OSError:
        time.sleep(0.1)
f = s.makefile("rw"); f.readline()
def cmd(name, args=None):
    f.write(json.dumps({"execute": name, "arguments": args or {}}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
cmd("qmp_capabilities")
r = cmd("block-dirty-bitmap-add", {"node": "d0", "name": "bench", "persistent": True})
assert "return" in r, r
PY

boot() { # name, disk args...
  local name=$1; shift
  qemu-system-x86_64 -accel "$accel" -M pc -cpu max -smp 1 -m 1G \
    -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \
    -nodefaults -display none -no-reboot -serial "file:$W/$name.console" \
    -kernel "$K/vmlinuz" -initrd "$W/initrd.cpio" -append "console=ttyS0 quiet panic=-1" "$@" \
    > "$W/$name.qemu" 2>&1
}
boot tidemark-vhost -chardev "socket,id=c,path=$W/tm-vhost.sock" -device vhost-user-blk-pci,chardev=c,num-queues=1
boot tidemark-nbd -blockdev "driver=nbd,node-name=n0,server.type=unix,server.path=$W/nbd.sock,export=d0" \
  -device virtio-blk-pci,drive=n0,num-queues=1
boot qsd-vhost -chardev "socket,id=c,path=$W/qsd-vhost.sock" -device vhost-user-blk-pci,chardev=c,num-queues=1

python3 - "$W" "$accel" "$RT" <<'PY'
import json, re, sys
w, accel, rt = sys.argv[1], sys.argv[2], sys.argv[3]
print(f"accelerator: {accel}, {rt} s per job (2 s ramp), guest: 1 vCPU, 1 queue, libaio, O_DIRECT")
print()
print("| target | job | IOPS | MB/s | guest CPU µs per I/O |")
print("|---|---|---:|---:|---:|")
for name in ["tidemark-vhost", "tidemark-nbd", "qsd-vhost"]:
    text = open(f"{w}/{name}.console", encoding="latin-1").read()
    for m in re.finditer(r"TM-JSON-BEGIN (\S+)\s*(.*?)TM-JSON-END", text, re.S):
        job = m.group(1)
        body = m.group(2)
        body = body[body.index("{"):]
        try:
            j = json.loads(body)["jobs"][0]
        except Exception as e:
            print(f"| {name} | {job} | error: {body[:200]!r} | | |"); continue
        wr = j["write"]
        ios = max(1, wr["total_ios"])
        cpu_us = (j["usr_cpu"] + j["sys_cpu"]) / 100.0 * j["job_runtime"] * 1000.0 / ios
        print(f"| {name} | {job} | {wr['iops']:.0f} | {wr['bw_bytes']/1e6:.1f} | {cpu_us:.1f} |")
PY
