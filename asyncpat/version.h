/*
 * asyncpat/version.h -- the single source of the library's version
 *
 * AP_VERSION_NUM = MAJOR * 1000000 + MINOR * 1000 + PATCH, for #if checks.
 * `make install` reads the numbers below to fill asyncpat.pc.
 */
#ifndef ASYNCPAT_VERSION_H
#define ASYNCPAT_VERSION_H

#define AP_VERSION_MAJOR 0
#define AP_VERSION_MINOR 1
#define AP_VERSION_PATCH 0

#define AP_VERSION_NUM \
    (AP_VERSION_MAJOR * 1000000 + AP_VERSION_MINOR * 1000 + AP_VERSION_PATCH)

#define AP__VERSION_STR2(x) #x
#define AP__VERSION_STR(x) AP__VERSION_STR2(x)
#define AP_VERSION_STRING                                                     \
    AP__VERSION_STR(AP_VERSION_MAJOR) "." AP__VERSION_STR(AP_VERSION_MINOR) "." \
    AP__VERSION_STR(AP_VERSION_PATCH)

#endif /* ASYNCPAT_VERSION_H */
