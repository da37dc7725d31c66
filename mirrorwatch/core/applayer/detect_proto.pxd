# compiled as plain Python (every flow passes through it: protocol detection, the parsers' common
# bookkeeping); nothing typed, every name stays importable.
