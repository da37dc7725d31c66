# compiled as plain Python: the rules' per-packet judging and the detector's build run as C;
# nothing typed here, every name stays importable.
