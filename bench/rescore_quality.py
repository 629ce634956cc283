"""Offline re-scoring of a bench quality run: the same candidates (code as generated), re-verified and
re-selected with the current codegen (imports added, probes, agreement). Generation is not repeated."""
import json, sys, statistics
from lift_sys.ir.validate import spec_from_document
from lift_sys.ir.prompt import EXAMPLE_IR
from lift_sys.codegen.prompt import fenced
from lift_sys.codegen.repair import generate_verified_code
from lift_sys.generation.engines.fake import FakeEngine
from lift_sys.service.core import InferenceService, GenerateOptions

rows = [json.loads(l) for l in open(sys.argv[1])]
rows = {r["task_id"]: r for r in rows}.values()
n = live = new = ver = ver_ok = 0
for r in rows:
    l = r["lift"]; n += 1; live += bool(l["passed"])
    if not l.get("candidates") or not l.get("ir"):
        continue
    doc = json.loads(json.dumps(EXAMPLE_IR)); doc.update(l["ir"])
    ir = spec_from_document(doc)
    for e, src in zip(ir.examples, l["ir"]["examples"]):
        e.given = src["given"]
    codes = [c["code"] or "" for c in l["candidates"]]
    it = iter(codes)
    svc = InferenceService(FakeEngine(lambda m, p, c: fenced(next(it))))
    gen = lambda ir_, o, feedback=None: svc.generate_code(ir_, o, feedback=feedback)
    res = generate_verified_code(gen, ir, GenerateOptions(), attempts=len(codes), from_request=gen)
    w = res.best.index if res.best else None
    passed = bool(w is not None and l["candidates_passed"][w])
    new += passed; ver += res.verified; ver_ok += res.verified and passed
    print(r["task_id"], "live", int(l["passed"]), "rescored", int(passed), "verified", res.verified,
          "winner", w, [a.agreement for a in res.attempts], len(res.attempts))
print(f"problems {n}: live pass {live}, rescored pass {new}; rescored verified {ver}, of which pass {ver_ok}")
