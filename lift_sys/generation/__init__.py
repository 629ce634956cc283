"""Generation: the infrastructure layer -- model runtimes and the constraints they decode under.

``engines/`` turn chat messages + sampling settings (+ a constraint) into
text: llama.cpp in-process (it masks with a compiled grammar) or any
OpenAI-compatible server (it takes the schema); a scripted fake for tests.
``grammar/`` compiles JSON Schema / regex / Lark into masks (llguidance,
xgrammar), with a compile cache and the lint + guard that refuse what a
backend would weaken. ``registry`` knows where model weights come from.
Nothing here knows what an IR is.
"""
