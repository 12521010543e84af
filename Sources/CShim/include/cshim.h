/*
 * The one place for what Swift cannot see on Linux: glibc declares recvmmsg/sendmmsg,
 * struct mmsghdr and in6_pktinfo only under _GNU_SOURCE, and CMSG_* / NLMSG_* are macros.
 * Everything here is a thin, allocation-free pass-through; the typed wrappers that
 * retry EINTR and report EAGAIN live in Sources/EventLoop/Syscalls.swift.
 */
#ifndef KUBEBRIDGE_CSHIM_H
#define KUBEBRIDGE_CSHIM_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

/* Same layout as glibc's struct mmsghdr (checked by a static assert in cshim.c). */
struct kb_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

int kb_recvmmsg(int fd, struct kb_mmsghdr *msgs, unsigned int vlen, int flags);
int kb_sendmmsg(int fd, struct kb_mmsghdr *msgs, unsigned int vlen, int flags);

/* Bytes of control buffer needed for one IPv4 or IPv6 packet-info message. */
size_t kb_pktinfo_space(void);

/*
 * Reads the destination address of a received datagram from its control messages
 * (IP_PKTINFO / IPV6_PKTINFO). Writes 4 or 16 address bytes into addr and the interface
 * index into ifindex; returns 4, 16, or 0 when the datagram carried no packet info.
 */
int kb_cmsg_get_pktinfo(const struct msghdr *msg, uint8_t addr[16], int *ifindex);

/*
 * Fills msg's control buffer (ctrl, of at least kb_pktinfo_space() bytes) so that a reply
 * leaves from the given local address (family AF_INET: 4 bytes, AF_INET6: 16 bytes).
 * Returns the control length that was set.
 */
size_t kb_cmsg_set_pktinfo(struct msghdr *msg, void *ctrl, int family, const uint8_t *addr, int ifindex);

/* Socket option numbers hidden behind _GNU_SOURCE or not imported by Swift's Glibc module. */
int kb_opt_ipv6_recvpktinfo(void);
int kb_opt_ip_pktinfo(void);
int kb_opt_so_reuseport(void);

/* Turns on IP_RECVERR (AF_INET) or IPV6_RECVERR (AF_INET6): ICMP errors for datagrams an
 * unconnected socket sent are queued on its error queue. Returns setsockopt's result. */
int kb_enable_recverr(int fd, int family);

/*
 * Reads one entry of fd's error queue (recvmsg with MSG_ERRQUEUE | MSG_DONTWAIT). On success
 * returns 1 and fills: payload (the start of the datagram that caused the error, at most cap
 * bytes; *payload_len), dest (its destination address; *dest_len), *err (the errno the ICMP
 * message means, e.g. ECONNREFUSED for port unreachable) and *from_icmp (1 when the error came
 * from an ICMP/ICMPv6 message, 0 for a local one). Returns 0 when the queue is empty, -1 with
 * errno on failure.
 */
int kb_recv_error(int fd, void *payload, size_t cap, size_t *payload_len,
                  struct sockaddr_storage *dest, socklen_t *dest_len, int *err, int *from_icmp);

/* accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC. */
int kb_accept4(int fd, struct sockaddr *addr, socklen_t *len);

/* eventfd(2) with EFD_NONBLOCK | EFD_CLOEXEC, counter 0. */
int kb_eventfd(void);

/* getrandom(2) without flags; returns bytes written or -1 with errno. */
ssize_t kb_getrandom(void *buf, size_t len);

#include "kb_netlink.h"

#endif
