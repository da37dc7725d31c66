# caps.py is compiled as plain Python classes (Capacity is a mixin of FlowTable, itself a Python
# class): nothing here is typed, so every name stays importable from Python.
