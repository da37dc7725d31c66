# compiled as plain Python (a DNS flood parses a message per packet); nothing typed, every name stays importable.
