#ifndef MOE_DISPATCH_H
#define MOE_DISPATCH_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
