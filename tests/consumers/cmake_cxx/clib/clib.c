/* tests/consumers/cmake_cxx/clib/clib.c: a C library beside asyncpat in a C++ project */
int clib_answer(void) { return 42; }
