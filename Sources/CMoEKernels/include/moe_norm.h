#ifndef MOE_NORM_H
#define MOE_NORM_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
