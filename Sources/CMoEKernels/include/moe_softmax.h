#ifndef MOE_SOFTMAX_H
#define MOE_SOFTMAX_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
