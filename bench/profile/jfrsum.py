"""Summarises a JFR recording: samples per thread, top frames, and the first Tidemark frame of each sample."""
import json, subprocess, sys, collections
f = sys.argv[1]
out = subprocess.run(["jfr", "print", "--json", "--events", "jdk.ExecutionSample,jdk.NativeMethodSample", f], capture_output=True, text=True).stdout
ev = json.loads(out)["recording"]["events"]
by = collections.Counter(); top = collections.Counter(); thr = collections.Counter(); deep = collections.Counter()
for e in ev:
    t = e["type"].split(".")[-1]
    v = e["values"]; th = (v.get("sampledThread") or {}).get("javaName", "?")
    frames = (v.get("stackTrace") or {}).get("frames", [])
    thn = ''.join(c for c in th if not c.isdigit())
    thr[(t, thn)] += 1
    if frames:
        fr = frames[0]["method"]; name = fr["type"]["name"].split(".")[-1] + "." + fr["name"]
        top[(t, thn, name)] += 1
        # first tidemark frame
        for x in frames:
            n = x["method"]["type"]["name"]
            if "tidemark" in n:
                deep[(t, thn, n.split(".")[-1] + "." + x["method"]["name"])] += 1; break
print("== samples per thread"); [print(c, k) for k, c in thr.most_common(12)]
print("== top frames"); [print(c, k) for k, c in top.most_common(25)]
print("== first tidemark frame"); [print(c, k) for k, c in deep.most_common(25)]
