# compiled as plain Python: the parser runs as C per record; nothing typed here.
