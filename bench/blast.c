/*
 * blast.c - a batched closed-loop UDP DNS load generator (supplement to dnsperf).
 *
 * dnsperf sends and receives one datagram per system call; on this 2-core VM a single
 * dnsperf core tops out around 150-190k qps, below what the recvmmsg echo "floor" can
 * answer.  blast uses sendmmsg/recvmmsg on NSOCK connected sockets so that the client
 * side is cheaper than the server side, to find the real one-core ceiling.
 *
 * Usage: blast ADDR PORT QUERYFILE SECONDS [OUTSTANDING=200] [NSOCK=4] [BATCH=32] [QPS=0]
 *   QUERYFILE: dnsperf format, "name TYPE" per line (A AAAA SRV TXT MX NS SOA PTR CNAME).
 * Each socket keeps OUTSTANDING/NSOCK queries in flight.  A socket that sees no answer for
 * 200 ms counts its in-flight queries as lost and refills its window.  Stops by itself
 * after SECONDS.  Prints: sent, answered, lost, qps, mean/p50/p99 latency (microseconds).
 *
 * QPS > 0 caps the send rate (paced: the client wakes every ~50 us and sends what the budget
 * allows, OUTSTANDING still bounds what is in flight); used to measure latency at a fixed load.
 * 0 = closed loop, as fast as the server answers.
 *
 * Build: gcc -O2 -Wall -o blast blast.c
 * (kubebridge bench/: copy of /work/shared/bench-tools/blast.c with the QPS cap added.)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXSOCK 64
#define MAXBATCH 256
#define QMAX 300
#define HBUCKETS 100000 /* latency histogram, 1 us buckets up to 100 ms */

typedef struct { unsigned char wire[QMAX]; int len; } query_t;

static query_t *queries;
static size_t nqueries;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int qtype_code(const char *t) {
    static const struct { const char *n; int c; } m[] = {
        {"A", 1}, {"NS", 2}, {"CNAME", 5}, {"SOA", 6}, {"PTR", 12}, {"MX", 15},
        {"TXT", 16}, {"AAAA", 28}, {"SRV", 33}, {"ANY", 255}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (!strcasecmp(t, m[i].n)) return m[i].c;
    return atoi(t) > 0 ? atoi(t) : -1;
}

static int encode(query_t *q, const char *name, int type) {
    unsigned char *p = q->wire;
    memset(p, 0, 12);
    p[2] = 0x01;            /* RD */
    p[5] = 1;               /* QDCOUNT */
    int off = 12;
    const char *s = name;
    while (*s) {
        const char *dot = strchr(s, '.');
        int l = dot ? (int)(dot - s) : (int)strlen(s);
        if (l == 0) break;
        if (l > 63 || off + l + 1 > QMAX - 6) return -1;
        p[off++] = (unsigned char)l;
        memcpy(p + off, s, (size_t)l);
        off += l;
        s += l;
        if (*s == '.') s++;
    }
    p[off++] = 0;
    p[off++] = (unsigned char)(type >> 8); p[off++] = (unsigned char)type;
    p[off++] = 0; p[off++] = 1; /* IN */
    q->len = off;
    return 0;
}

static void load(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) { perror(file); exit(1); }
    size_t cap = 4096;
    queries = malloc(cap * sizeof *queries);
    char line[512], name[300], type[32];
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%299s %31s", name, type) != 2) continue;
        int t = qtype_code(type);
        if (t < 0) continue;
        if (nqueries == cap) { cap *= 2; queries = realloc(queries, cap * sizeof *queries); }
        if (encode(&queries[nqueries], name, t) == 0) nqueries++;
    }
    fclose(f);
    if (!nqueries) { fprintf(stderr, "no queries in %s\n", file); exit(1); }
}

typedef struct {
    int fd;
    int window, inflight;
    uint16_t next_id;
    double last_rx;
    double *sent_at;   /* indexed by DNS ID */
} sock_t;

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s ADDR PORT QUERYFILE SECONDS [OUTSTANDING] [NSOCK] [BATCH] [QPS]\n", argv[0]); return 2; }
    const char *addr = argv[1];
    int port = atoi(argv[2]);
    double secs = atof(argv[4]);
    int outstanding = argc > 5 ? atoi(argv[5]) : 200;
    int nsock = argc > 6 ? atoi(argv[6]) : 4;
    int batch = argc > 7 ? atoi(argv[7]) : 32;
    double maxqps = argc > 8 ? atof(argv[8]) : 0;
    if (maxqps < 0) maxqps = 0;
    if (nsock < 1 || nsock > MAXSOCK) nsock = 4;
    if (batch < 1 || batch > MAXBATCH) batch = 32;
    if (outstanding < nsock) outstanding = nsock;
    if (secs <= 0 || secs > 600) secs = 10;  /* always bounded */
    load(argv[3]);

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) { fprintf(stderr, "bad addr\n"); return 2; }

    static sock_t S[MAXSOCK];
    struct pollfd pfd[MAXSOCK];
    for (int i = 0; i < nsock; i++) {
        S[i].fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (S[i].fd < 0 || connect(S[i].fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("socket/connect"); return 1; }
        S[i].window = outstanding / nsock + (i < outstanding % nsock ? 1 : 0);
        S[i].sent_at = calloc(65536, sizeof(double));
        S[i].next_id = (uint16_t)(i * 7919);
        pfd[i].fd = S[i].fd;
        pfd[i].events = POLLIN;
    }

    static unsigned char txbuf[MAXBATCH][QMAX];
    static unsigned char rxbuf[MAXBATCH][1500];
    static struct iovec txiov[MAXBATCH], rxiov[MAXBATCH];
    static struct mmsghdr txm[MAXBATCH], rxm[MAXBATCH];
    static unsigned long long hist[HBUCKETS + 1];
    for (int i = 0; i < MAXBATCH; i++) {
        txiov[i].iov_base = txbuf[i];
        txm[i].msg_hdr.msg_iov = &txiov[i]; txm[i].msg_hdr.msg_iovlen = 1;
        rxiov[i].iov_base = rxbuf[i]; rxiov[i].iov_len = sizeof rxbuf[i];
        rxm[i].msg_hdr.msg_iov = &rxiov[i]; rxm[i].msg_hdr.msg_iovlen = 1;
    }

    size_t qi = 0;
    unsigned long long sent = 0, answered = 0, lost = 0, bad = 0;
    double lat_sum = 0;
    double t0 = now(), tend = t0 + secs;

    /* send up to n new queries on socket s */
    #define FILL(s, n) do {                                                     \
        int _n = (n), _done = 0;                                                \
        if (maxqps > 0) {                                                       \
            long long _budget = (long long)((now() - t0) * maxqps) + 1 - (long long)sent; \
            if (_budget < _n) _n = _budget < 0 ? 0 : (int)_budget;              \
        }                                                                       \
        while (_done < _n) {                                                    \
            int _b = _n - _done > batch ? batch : _n - _done;                   \
            double _t = now();                                                  \
            if ((s)->inflight == 0) (s)->last_rx = _t; /* idle socket: start its 200 ms loss clock now */ \
            for (int _k = 0; _k < _b; _k++) {                                   \
                query_t *_q = &queries[qi++ % nqueries];                        \
                memcpy(txbuf[_k], _q->wire, (size_t)_q->len);                   \
                uint16_t _id = (s)->next_id++;                                  \
                txbuf[_k][0] = (unsigned char)(_id >> 8); txbuf[_k][1] = (unsigned char)_id; \
                txiov[_k].iov_len = (size_t)_q->len;                            \
                (s)->sent_at[_id] = _t;                                         \
            }                                                                   \
            int _r = sendmmsg((s)->fd, txm, (unsigned)_b, 0);                   \
            if (_r <= 0) break;                                                 \
            _done += _r; sent += (unsigned long long)_r;                        \
            (s)->inflight += _r;                                                \
        }                                                                       \
    } while (0)

    for (int i = 0; i < nsock; i++) { S[i].last_rx = t0; FILL(&S[i], S[i].window); }

    while (1) {
        double t = now();
        if (t >= tend) break;
        int pr;
        if (maxqps > 0) {
            struct timespec pts = {0, 50000};   /* paced: wake up often to send on time */
            pr = ppoll(pfd, (nfds_t)nsock, &pts, NULL);
        } else {
            pr = poll(pfd, (nfds_t)nsock, 10);
        }
        if (pr < 0 && errno != EINTR) { perror("poll"); break; }
        t = now();
        for (int i = 0; i < nsock; i++) {
            sock_t *s = &S[i];
            if (pfd[i].revents & POLLIN) {
                int n = recvmmsg(s->fd, rxm, (unsigned)batch, MSG_DONTWAIT, NULL);
                if (n > 0) {
                    double tr = now();
                    int good = 0;
                    for (int k = 0; k < n; k++) {
                        if (rxm[k].msg_len < 12 || !(rxbuf[k][2] & 0x80)) { bad++; continue; }
                        uint16_t id = (uint16_t)((rxbuf[k][0] << 8) | rxbuf[k][1]);
                        double st = s->sent_at[id];
                        if (st <= 0) { bad++; continue; }
                        s->sent_at[id] = 0;
                        double us = (tr - st) * 1e6;
                        lat_sum += us;
                        hist[us >= HBUCKETS ? HBUCKETS : (int)us]++;
                        good++;
                    }
                    answered += (unsigned long long)good;
                    s->inflight -= good;
                    if (s->inflight < 0) s->inflight = 0;
                    s->last_rx = tr;
                    if (tr < tend) FILL(s, s->window - s->inflight);
                }
            } else if (s->inflight > 0 && t - s->last_rx > 0.2) {
                /* nothing for 200 ms: count in-flight as lost, forget them, refill */
                lost += (unsigned long long)s->inflight;
                for (int id = 0; id < 65536; id++) s->sent_at[id] = 0;
                s->inflight = 0;
                s->last_rx = t;
                FILL(s, s->window);
            }
        }
        if (maxqps > 0 && now() < tend)
            for (int i = 0; i < nsock; i++) FILL(&S[i], S[i].window - S[i].inflight);
    }
    double el = now() - t0;
    /* percentiles */
    unsigned long long acc = 0, p50 = 0, p99 = 0, p999 = 0;
    int got50 = 0, got99 = 0, got999 = 0;
    for (int b = 0; b <= HBUCKETS; b++) {
        acc += hist[b];
        if (!got50 && acc * 2 >= answered) { p50 = (unsigned long long)b; got50 = 1; }
        if (!got99 && acc * 100 >= answered * 99) { p99 = (unsigned long long)b; got99 = 1; }
        if (!got999 && acc * 1000 >= answered * 999) { p999 = (unsigned long long)b; got999 = 1; }
    }
    printf("blast: sent %llu answered %llu lost %llu bad %llu in %.3f s\n", sent, answered, lost, bad, el);
    printf("Queries per second: %.0f\n", answered / el);
    printf("Latency us: mean %.0f p50 %llu p99 %llu p99.9 %llu\n", answered ? lat_sum / (double)answered : 0.0, p50, p99, p999);
    return 0;
}
