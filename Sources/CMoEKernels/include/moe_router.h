#ifndef MOE_ROUTER_H
#define MOE_ROUTER_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
