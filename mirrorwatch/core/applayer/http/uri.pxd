# Compiled with its .py (mirrorwatch.COMPILED): every request's Host is split by it; its
# functions stay Python functions (detection normalises URIs through them too) and nothing
# is declared.
