#ifndef MOE_MPI_H
#define MOE_MPI_H

#include <stdint.h>

/* A thin C layer over Open MPI for SparseMoEMPI: every collective is the non-blocking MPI
 * call followed by MPI_Test polling until it completes or `timeout` seconds pass.
 * Return codes: 0 done, 1 timed out, 2 MPI error (message in err), 3 MPI not compiled in. */

/* 1 when this build has MPI (mpi.h was found at build time). */
int moe_mpi_available(void);
/* MPI_Init_thread(MPI_THREAD_FUNNELED); rank and size of MPI_COMM_WORLD. */
int moe_mpi_init(int *rank, int *size, char *err, int errlen);
/* Deterministic sum: reduce-scatter by MPI_Ialltoallv (rank r sums chunk r in rank order),
 * then MPI_Iallgatherv: every rank gets bit-identical ((x0 + x1) + x2) + ... */
int moe_mpi_allreduce_sum(float *buf, int64_t n, double timeout, char *err, int errlen);
int moe_mpi_bcast(float *buf, int64_t n, int root, double timeout, char *err, int errlen);
/* One int per rank to each rank (MPI_Ialltoall). */
int moe_mpi_alltoall_int(const int *send, int *recv, double timeout, char *err, int errlen);
/* MPI_Ialltoallv of floats; counts and displacements in floats. */
int moe_mpi_alltoallv_float(const float *send, const int *sendcounts, const int *sdispls,
                            float *recv, const int *recvcounts, const int *rdispls,
                            double timeout, char *err, int errlen);
int moe_mpi_barrier(double timeout, char *err, int errlen);
/* Sub-communicators. A communicator is a small handle: 0 is MPI_COMM_WORLD, others come from
 * moe_mpi_comm_split (MPI_Comm_split of `comm` by color and key, after a non-blocking barrier
 * polled against the timeout, so a missing peer ends in a timeout rather than a hang); the
 * new handle, this rank's rank and the size are written out. At most 64 handles per process. */
int moe_mpi_comm_split(int comm, int color, int key, int *newcomm, int *rank, int *size,
                       double timeout, char *err, int errlen);
/* The collectives above on communicator handle `comm`. */
int moe_mpi_allreduce_sum_on(int comm, float *buf, int64_t n, double timeout, char *err, int errlen);
int moe_mpi_bcast_on(int comm, float *buf, int64_t n, int root, double timeout, char *err, int errlen);
int moe_mpi_alltoall_int_on(int comm, const int *send, int *recv, double timeout, char *err, int errlen);
int moe_mpi_alltoallv_float_on(int comm, const float *send, const int *sendcounts, const int *sdispls,
                               float *recv, const int *recvcounts, const int *rdispls,
                               double timeout, char *err, int errlen);
int moe_mpi_barrier_on(int comm, double timeout, char *err, int errlen);
/* MPI_Abort(MPI_COMM_WORLD, code): ends every rank. */
void moe_mpi_abort(int code);
void moe_mpi_finalize(void);

#endif
