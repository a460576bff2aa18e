#!/bin/bash
# JFR profiles of `tidemark serve` for the issue-14 goals not met (docs/benchmarks.md, "Where the time goes").
# Usage: bench/profile/profile.sh writes|incremental|fleece [OUTDIR]; summarise with bench/profile/jfrsum.py OUTDIR/NAME.jfr
# Needs the daemon's jar (mvn -B -q -pl engine/app -am package -Dmaven.test.skip=true), fio, qemu-img, jfr, bc.
set -e
case "$1" in writes|incremental|fleece) ;; *) echo "usage: $0 writes|incremental|fleece [OUTDIR]" >&2; exit 2;; esac
W=/dev/shm/tidemark-profile; rm -rf $W; mkdir -p $W/bitmaps
JAR=${TIDEMARK_JAR:-$(dirname "$0")/../../engine/app/target/tidemark.jar}; OUT=${2:-.}; mkdir -p "$OUT"
FLAGS="--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED --add-exports=java.base/sun.nio.ch=ALL-UNNAMED --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED"
Q() { java -jar $JAR qmp --socket $W/q.sock "$@" >/dev/null; }
qemu-img create -q -f raw $W/image.raw 2G
[ "$1" != writes ] && dd if=/dev/urandom of=$W/image.raw bs=1M count=2048 conv=notrunc status=none
java $FLAGS -XX:StartFlightRecording=filename=$OUT/$1.jfr,dumponexit=true,settings=profile -jar $JAR serve \
  --blockdev driver=file,node-name=d0,filename=$W/image.raw --bitmap-root $W/bitmaps \
  --nbd-server addr.type=unix,addr.path=$W/nbd.sock --export type=nbd,id=exp0,node-name=d0,name=disk,writable=on \
  --qmp-socket $W/q.sock > $OUT/$1.serve.log 2>&1 &
PID=$!
while [ ! -S $W/q.sock ] || [ ! -S $W/nbd.sock ]; do sleep 0.2; done; sleep 1
FIO="fio --name=nbd --ioengine=nbd --uri=nbd+unix:///disk?socket=$W/nbd.sock --size=2048m --output-format=json"
case $1 in
writes)
  for i in 0 1 2 3; do Q block-dirty-bitmap-add "{\"node\":\"d0\",\"name\":\"b$i\",\"persistent\":true}"; done
  $FIO --rw=randwrite --bs=4k --iodepth=16 --time_based --runtime=15 | python3 -c "import json,sys;print((lambda s: json.loads(s[s.index(\"{\"):]))(sys.stdin.read())[\"jobs\"][0][\"write\"][\"iops\"])" > $OUT/writes.fio ;;
incremental)
  Q block-dirty-bitmap-add '{"node":"d0","name":"b0","persistent":true}'
  for i in $(seq 1 12); do
    $FIO --rw=randwrite --bs=64k --iodepth=16 --number_ios=3277 --randseed=$i >/dev/null   # ~10 % of 2 GiB
    rm -f $W/t.qcow2; qemu-img create -q -f qcow2 -o cluster_size=65536 $W/t.qcow2 2G
    Q blockdev-add "{\"driver\":\"qcow2\",\"node-name\":\"tgt\",\"file\":{\"driver\":\"file\",\"filename\":\"$W/t.qcow2\"}}"
    s=$(date +%s.%N)
    Q blockdev-backup '{"device":"d0","target":"tgt","sync":"incremental","bitmap":"b0","job-id":"j0"}'
    while java -jar $JAR qmp --socket $W/q.sock --json query-jobs | grep -q j0; do sleep 0.01; done
    echo "incremental $i: $(echo "$(date +%s.%N) - $s" | bc) s (incl. polling JVMs)" >> $OUT/incremental.times
    Q blockdev-del '{"node-name":"tgt"}'
  done ;;
fleece)
  Q block-dirty-bitmap-add '{"node":"d0","name":"b0","persistent":true}'
  qemu-img create -q -f qcow2 $W/fl.qcow2 2G
  Q blockdev-add "{\"driver\":\"qcow2\",\"node-name\":\"fl\",\"backing\":\"d0\",\"file\":{\"driver\":\"file\",\"filename\":\"$W/fl.qcow2\"}}"
  Q blockdev-backup '{"device":"d0","target":"fl","sync":"none","job-id":"jfl"}'
  Q block-export-add '{"type":"nbd","id":"fe","node-name":"fl","name":"fleece"}'
  $FIO --rw=randwrite --bs=4k --iodepth=16 --time_based --runtime=15 | python3 -c "import json,sys;print((lambda s: json.loads(s[s.index(\"{\"):]))(sys.stdin.read())[\"jobs\"][0][\"write\"][\"iops\"])" > $OUT/fleece.fio ;;
esac
kill $PID; wait $PID || true
rm -rf $W
