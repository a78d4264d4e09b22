#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <sched.h>
#include "moe_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if __has_include(<mpi.h>)
#include <mpi.h>
#include <limits.h>
#include <time.h>

int moe_mpi_available(void) { return 1; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int failed(int rc, const char *op, char *err, int errlen) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    snprintf(err, (size_t)errlen, "%s: %s", op, text);
    return 2;
}

/* Polls `req` until done or the deadline. Open MPI advances a non-blocking collective only
 * inside MPI calls, so the first MOE_MPI_SPIN_SECONDS poll back to back (yielding the core to
 * any other runnable task between polls): a large all-reduce's pipeline then moves at the
 * transport's speed. After that, 0.05 ms sleeps between polls, so a rank waiting for a slow
 * or dead peer leaves its core. */
#define MOE_MPI_SPIN_SECONDS 0.005
static int wait_for(MPI_Request *req, double timeout, const char *op, char *err, int errlen) {
    const double start = now(), deadline = start + timeout;
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return failed(rc, op, err, errlen);
        if (done) return 0;
        if (now() > deadline) {
            snprintf(err, (size_t)errlen, "%s did not complete within %.1f s", op, timeout);
            return 1;
        }
        if (now() - start < MOE_MPI_SPIN_SECONDS) {
            sched_yield();
            continue;
        }
        struct timespec pause = {0, 50000};
        nanosleep(&pause, NULL);
    }
}

int moe_mpi_init(int *rank, int *size, char *err, int errlen) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        int provided = 0;
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return failed(rc, "MPI_Init_thread", err, errlen);
        /* Errors come back as codes instead of aborting, so they reach the caller's message. */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return 0;
}

/* Communicator handles: 0 is MPI_COMM_WORLD, the others come from moe_mpi_comm_split. */
#define MOE_MPI_MAX_COMMS 64
static MPI_Comm comms[MOE_MPI_MAX_COMMS];
static int comm_count = 1;

static MPI_Comm comm_of(int handle) {
    return handle > 0 && handle < comm_count ? comms[handle] : MPI_COMM_WORLD;
}

int moe_mpi_comm_split(int comm, int color, int key, int *newcomm, int *rank, int *size,
                       double timeout, char *err, int errlen) {
    if (comm_count >= MOE_MPI_MAX_COMMS) {
        snprintf(err, (size_t)errlen, "split: at most %d communicators per process", MOE_MPI_MAX_COMMS - 1);
        return 2;
    }
    MPI_Comm parent = comm_of(comm);
    MPI_Request req;
    int rc = MPI_Ibarrier(parent, &req);
    int status = rc != MPI_SUCCESS ? failed(rc, "MPI_Ibarrier", err, errlen) : wait_for(&req, timeout, "split (barrier)", err, errlen);
    if (status != 0) return status;
    MPI_Comm made;
    rc = MPI_Comm_split(parent, color, key, &made);
    if (rc != MPI_SUCCESS) return failed(rc, "MPI_Comm_split", err, errlen);
    MPI_Comm_set_errhandler(made, MPI_ERRORS_RETURN);
    comms[comm_count] = made;
    *newcomm = comm_count++;
    MPI_Comm_rank(made, rank);
    MPI_Comm_size(made, size);
    return 0;
}

int moe_mpi_allreduce_sum(float *buf, int64_t n, double timeout, char *err, int errlen) {
    return moe_mpi_allreduce_sum_on(0, buf, n, timeout, err, errlen);
}

int moe_mpi_allreduce_sum_on(int handle, float *buf, int64_t n, double timeout, char *err, int errlen) {
    MPI_Comm comm = comm_of(handle);
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (n > INT_MAX / 2) { snprintf(err, (size_t)errlen, "allreduce of %lld floats: at most %d per call", (long long)n, INT_MAX / 2); return 2; }
    int *counts = malloc(sizeof(int) * 4 * (size_t)size);
    int *displs = counts + size, *rcounts = counts + 2 * size, *rdispls = counts + 3 * size;
    for (int r = 0; r < size; r++) {
        int64_t lo = n * r / size, hi = n * (r + 1) / size;
        counts[r] = (int)(hi - lo);
        displs[r] = (int)lo;
    }
    const int mine = counts[rank];
    for (int r = 0; r < size; r++) { rcounts[r] = mine; rdispls[r] = r * mine; }
    float *parts = malloc(sizeof(float) * ((size_t)mine * (size_t)size + 1));
    MPI_Request req;
    int rc = MPI_Ialltoallv(buf, counts, displs, MPI_FLOAT, parts, rcounts, rdispls, MPI_FLOAT, comm, &req);
    int status = rc != MPI_SUCCESS ? failed(rc, "MPI_Ialltoallv", err, errlen)
                                   : wait_for(&req, timeout, "allreduce (reduce-scatter)", err, errlen);
    if (status == 0) {
        float *out = buf + displs[rank];
        for (int i = 0; i < mine; i++) out[i] = parts[i];
        for (int r = 1; r < size; r++) {
            const float *p = parts + (size_t)r * mine;
            for (int i = 0; i < mine; i++) out[i] += p[i];
        }
        rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT, comm, &req);
        status = rc != MPI_SUCCESS ? failed(rc, "MPI_Iallgatherv", err, errlen)
                                   : wait_for(&req, timeout, "allreduce (all-gather)", err, errlen);
    }
    free(parts);
    free(counts);
    return status;
}

int moe_mpi_bcast(float *buf, int64_t n, int root, double timeout, char *err, int errlen) {
    return moe_mpi_bcast_on(0, buf, n, root, timeout, err, errlen);
}

int moe_mpi_bcast_on(int handle, float *buf, int64_t n, int root, double timeout, char *err, int errlen) {
    if (n > INT_MAX) { snprintf(err, (size_t)errlen, "broadcast of %lld floats: at most %d per call", (long long)n, INT_MAX); return 2; }
    MPI_Request req;
    int rc = MPI_Ibcast(buf, (int)n, MPI_FLOAT, root, comm_of(handle), &req);
    return rc != MPI_SUCCESS ? failed(rc, "MPI_Ibcast", err, errlen) : wait_for(&req, timeout, "broadcast", err, errlen);
}

int moe_mpi_alltoall_int(const int *send, int *recv, double timeout, char *err, int errlen) {
    return moe_mpi_alltoall_int_on(0, send, recv, timeout, err, errlen);
}

int moe_mpi_alltoall_int_on(int handle, const int *send, int *recv, double timeout, char *err, int errlen) {
    MPI_Request req;
    int rc = MPI_Ialltoall(send, 1, MPI_INT, recv, 1, MPI_INT, comm_of(handle), &req);
    return rc != MPI_SUCCESS ? failed(rc, "MPI_Ialltoall", err, errlen) : wait_for(&req, timeout, "all-to-all (counts)", err, errlen);
}

int moe_mpi_alltoallv_float(const float *send, const int *sendcounts, const int *sdispls,
                            float *recv, const int *recvcounts, const int *rdispls,
                            double timeout, char *err, int errlen) {
    return moe_mpi_alltoallv_float_on(0, send, sendcounts, sdispls, recv, recvcounts, rdispls, timeout, err, errlen);
}

int moe_mpi_alltoallv_float_on(int handle, const float *send, const int *sendcounts, const int *sdispls,
                               float *recv, const int *recvcounts, const int *rdispls,
                               double timeout, char *err, int errlen) {
    MPI_Request req;
    int rc = MPI_Ialltoallv(send, sendcounts, sdispls, MPI_FLOAT, recv, recvcounts, rdispls, MPI_FLOAT, comm_of(handle), &req);
    return rc != MPI_SUCCESS ? failed(rc, "MPI_Ialltoallv", err, errlen) : wait_for(&req, timeout, "all-to-all (rows)", err, errlen);
}

int moe_mpi_barrier(double timeout, char *err, int errlen) {
    return moe_mpi_barrier_on(0, timeout, err, errlen);
}

int moe_mpi_barrier_on(int handle, double timeout, char *err, int errlen) {
    MPI_Request req;
    int rc = MPI_Ibarrier(comm_of(handle), &req);
    return rc != MPI_SUCCESS ? failed(rc, "MPI_Ibarrier", err, errlen) : wait_for(&req, timeout, "barrier", err, errlen);
}

void moe_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

void moe_mpi_finalize(void) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}

#else /* built without MPI */

static int missing(char *err, int errlen) {
    snprintf(err, (size_t)errlen, "this build of moe has no MPI: install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) and rebuild");
    return 3;
}
int moe_mpi_available(void) { return 0; }
int moe_mpi_init(int *rank, int *size, char *err, int errlen) { *rank = 0; *size = 1; return missing(err, errlen); }
int moe_mpi_allreduce_sum(float *b, int64_t n, double t, char *err, int errlen) { (void)b; (void)n; (void)t; return missing(err, errlen); }
int moe_mpi_bcast(float *b, int64_t n, int r, double t, char *err, int errlen) { (void)b; (void)n; (void)r; (void)t; return missing(err, errlen); }
int moe_mpi_alltoall_int(const int *s, int *r, double t, char *err, int errlen) { (void)s; (void)r; (void)t; return missing(err, errlen); }
int moe_mpi_alltoallv_float(const float *s, const int *sc, const int *sd, float *r, const int *rc, const int *rd,
                            double t, char *err, int errlen) {
    (void)s; (void)sc; (void)sd; (void)r; (void)rc; (void)rd; (void)t;
    return missing(err, errlen);
}
int moe_mpi_barrier(double t, char *err, int errlen) { (void)t; return missing(err, errlen); }
int moe_mpi_comm_split(int c, int color, int key, int *nc, int *rank, int *size, double t, char *err, int errlen) {
    (void)c; (void)color; (void)key; (void)t; *nc = 0; *rank = 0; *size = 1;
    return missing(err, errlen);
}
int moe_mpi_allreduce_sum_on(int c, float *b, int64_t n, double t, char *err, int errlen) { (void)c; (void)b; (void)n; (void)t; return missing(err, errlen); }
int moe_mpi_bcast_on(int c, float *b, int64_t n, int r, double t, char *err, int errlen) { (void)c; (void)b; (void)n; (void)r; (void)t; return missing(err, errlen); }
int moe_mpi_alltoall_int_on(int c, const int *s, int *r, double t, char *err, int errlen) { (void)c; (void)s; (void)r; (void)t; return missing(err, errlen); }
int moe_mpi_alltoallv_float_on(int c, const float *s, const int *sc, const int *sd, float *r, const int *rc, const int *rd,
                               double t, char *err, int errlen) {
    (void)c; (void)s; (void)sc; (void)sd; (void)r; (void)rc; (void)rd; (void)t;
    return missing(err, errlen);
}
int moe_mpi_barrier_on(int c, double t, char *err, int errlen) { (void)c; (void)t; return missing(err, errlen); }
void moe_mpi_abort(int code) { exit(code); }
void moe_mpi_finalize(void) {}

#endif
