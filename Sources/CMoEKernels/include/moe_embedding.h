#ifndef MOE_EMBEDDING_H
#define MOE_EMBEDDING_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
