#!/bin/bash
# A/B: tidemark serve with N live checkpoints, N alternating 1/64, fio 4 KiB randwrite QD16 3 s (1 s ramp), unix socket.
# Needs the daemon jar (mvn -B -q -pl engine/app -am package -Dmaven.test.skip=true), fio, python3; docs/benchmarks.md "Checkpoints".
W=/dev/shm/tidemark-checkpoints-ab; rm -rf $W; mkdir -p $W
J=${TIDEMARK_JAR:-$(dirname "$0")/../../engine/app/target/tidemark.jar}
FLAGS="--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED --add-exports=java.base/sun.nio.ch=ALL-UNNAMED --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED"
dd if=/dev/urandom of=$W/image.raw bs=1M count=1024 status=none
for round in 1 2 3 4; do for n in 1 64; do
  rm -rf $W/bitmaps $W/*.sock; mkdir -p $W/bitmaps
  java $FLAGS -jar $J serve --blockdev driver=file,node-name=d0,filename=$W/image.raw --bitmap-root $W/bitmaps \
    --nbd-server addr.type=unix,addr.path=$W/nbd.sock --export type=nbd,id=e,node-name=d0,name=disk,writable=on \
    --qmp-socket $W/q.sock > $W/log 2>&1 &
  P=$!; while [ ! -S $W/q.sock ] || [ ! -S $W/nbd.sock ]; do sleep 0.1; done
  { for i in $(seq 0 $((n-1))); do echo "__dev.tidemark_checkpoint-add {\"node\":\"d0\",\"name\":\"c$i\"}"; done; } | java -jar $J qmp --socket $W/q.sock > /dev/null
  iops=$(fio --name=w --ioengine=nbd --uri="nbd+unix:///disk?socket=$W/nbd.sock" --rw=randwrite --bs=4k --iodepth=16 --size=1024m --time_based --runtime=3 --ramp_time=1 --output-format=json 2>/dev/null | python3 -c "import json,sys;s=sys.stdin.read();print(round(json.loads(s[s.index('{'):])['jobs'][0]['write']['iops']))")
  echo "round $round n=$n iops=$iops epoch-map=$(find $W/bitmaps -name epochs.tmem | wc -l)"
  kill $P; wait $P 2>/dev/null
done; done
rm -rf $W
