#!/usr/bin/env python3
"""Test a deployed endpoint end to end (the seed's test_modal_endpoint.py).

    python scripts/test_modal_endpoint.py https://<workspace>--lift-sys-inference-serve.modal.run [--output out.json]

A thin wrapper over `lift-sys e2e`, which does the work.
"""

import sys

from lift_sys.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and not args[0].startswith("-"):
        args = ["--url", args[0], *args[1:]]
    sys.argv = ["lift-sys", "e2e", *args]
    main()
