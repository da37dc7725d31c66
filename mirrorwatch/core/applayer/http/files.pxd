# Compiled with its .py (mirrorwatch.COMPILED). HttpFile stays a Python class (the records are
# read by interpreted code) and a body opens its file once: nothing is declared; the gain is the
# compiled function bodies.
