#ifndef MOE_ATTENTION_H
#define MOE_ATTENTION_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
