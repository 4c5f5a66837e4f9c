/*
 * asyncpat.h -- the single include
 *
 * Includes every asyncpat header. Define AP_NO_<NAME> (AP_NO_SPSC,
 * AP_NO_MPMC, ...) before including to leave a pattern out, or include
 * asyncpat/<pattern>.h directly: every header stands alone.
 */
#ifndef ASYNCPAT_H
#define ASYNCPAT_H

#include "asyncpat/config.h"
#include "asyncpat/version.h"
#include "asyncpat/status.h"
#include "asyncpat/core.h"
#include "asyncpat/time.h"
#include "asyncpat/future.h"
#include "asyncpat/waitlist.h"

#ifndef AP_NO_TIMEOUT
#include "asyncpat/timeout.h"
#endif

#ifndef AP_NO_SPSC
#include "asyncpat/spsc.h"
#endif
#ifndef AP_NO_MPMC
#include "asyncpat/mpmc.h"
#endif
#ifndef AP_NO_SEMAPHORE
#include "asyncpat/semaphore.h"
#endif
#ifndef AP_NO_TOKEN_BUCKET
#include "asyncpat/token_bucket.h"
#endif
#ifndef AP_NO_BACKPRESSURE
#include "asyncpat/backpressure.h"
#endif
#ifndef AP_NO_RETRY
#include "asyncpat/retry.h"
#endif

#ifndef AP_NO_CIRCUIT_BREAKER
#include "asyncpat/circuit_breaker.h"
#endif
#ifndef AP_NO_WORK_STEAL
#include "asyncpat/work_steal.h"
#endif
#ifndef AP_NO_FANOUT
#include "asyncpat/fanout.h"
#endif
#ifndef AP_NO_BARRIER
#include "asyncpat/barrier.h"
#endif
#ifndef AP_NO_POOL
#include "asyncpat/pool.h"
#endif
#ifndef AP_NO_CONNPOOL
#include "asyncpat/connpool.h"
#endif
#ifndef AP_NO_CACHE
#include "asyncpat/cache.h"
#endif
#ifndef AP_NO_PIPELINE
#include "asyncpat/pipeline.h"
#endif
#ifndef AP_NO_BATCH
#include "asyncpat/batch.h"
#endif
#ifndef AP_NO_PREFETCH
#include "asyncpat/prefetch.h"
#endif
#ifndef AP_NO_PUBSUB
#include "asyncpat/pubsub.h"
#endif
#ifndef AP_NO_TOPIC
#include "asyncpat/topic.h"
#endif
#ifndef AP_NO_AGGREGATE
#include "asyncpat/aggregate.h"
#endif
#ifndef AP_NO_WINDOW
#include "asyncpat/window.h"
#endif
#ifndef AP_NO_SPLIT
#include "asyncpat/split.h"
#endif
#ifndef AP_NO_LIFECYCLE
#include "asyncpat/lifecycle.h"
#endif
#ifndef AP_NO_CANCEL
#include "asyncpat/cancel.h"
#endif
#ifndef AP_NO_RESILIENCE
#include "asyncpat/resilience.h"
#endif
#endif /* ASYNCPAT_H */
