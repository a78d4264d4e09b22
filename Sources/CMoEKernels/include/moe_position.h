#ifndef MOE_POSITION_H
#define MOE_POSITION_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
