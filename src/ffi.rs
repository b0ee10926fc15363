//! The C API: opaque handles with the `tw_` prefix, numbered status codes, a panic boundary on
//! every function. The header `include/tickwire.h` is generated from this file by cbindgen.
