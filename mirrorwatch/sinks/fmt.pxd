# compiled as plain Python (a flood writes a flow record per packet); nothing typed, every name stays importable.
