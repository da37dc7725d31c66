# Compiled with its .py (mirrorwatch.COMPILED). Its classes stay Python classes (HttpState is
# assembled from mixins; the records are built and read by interpreted code) and it has no
# module-level helper worth typing: nothing is declared; the gain is the compiled function bodies.
