/* Open MPI, found by pkg-config (ompi-c). Only CMoEMPI uses it; without libopenmpi-dev the
 * package still builds and CMoEMPI reports that MPI is not available. */
#if __has_include(<mpi.h>)
#include <mpi.h>
#endif
