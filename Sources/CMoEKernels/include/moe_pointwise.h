#ifndef MOE_POINTWISE_H
#define MOE_POINTWISE_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
