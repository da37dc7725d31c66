# Compiled with its .py (mirrorwatch.COMPILED): every HTTP flow makes an HttpStats, so its
# constructor is compiled; the classes stay Python classes (the stats are read by name) and
# nothing is declared.
