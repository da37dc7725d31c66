cpdef unsigned int u16(bytes f, Py_ssize_t i)
cpdef unsigned long long u32(bytes f, Py_ssize_t i)
