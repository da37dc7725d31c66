# compiled as plain Python (the core makes one of these per session that ends, per alert...:
# their __init__ runs as C); nothing typed, every name stays importable.
