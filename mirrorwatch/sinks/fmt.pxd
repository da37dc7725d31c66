# The sinks' text forms; timestamps and addresses are typed (a flood writes a flow record, two
# timestamps and two addresses, per packet). Everything else is plain Python compiled, every
# name importable.
cimport cython

@cython.locals(usec="long long", rest=double)
cpdef long long _usec(double frac)

@cython.locals(sec="long long", usec="long long")
cpdef str iso_time(double ts)

@cython.locals(sec="long long", usec="long long")
cpdef str fast_time(double ts)

@cython.locals(n=Py_ssize_t, octets="const unsigned char *", a=int, b=int, c=int, d=int)
cpdef str addr(object packed)

@cython.locals(h=str)
cpdef str log_addr(object packed, bint ipv6_compress=*)
