#define _GNU_SOURCE
#include "cshim.h"
#include <string.h>
#include <sys/random.h>
#include <sys/eventfd.h>
#include <assert.h>
#include <errno.h>
#include <linux/errqueue.h>

_Static_assert(sizeof(struct kb_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
_Static_assert(offsetof(struct kb_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "mmsghdr layout");

int kb_recvmmsg(int fd, struct kb_mmsghdr *msgs, unsigned int vlen, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)msgs, vlen, flags, NULL);
}

int kb_sendmmsg(int fd, struct kb_mmsghdr *msgs, unsigned int vlen, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)msgs, vlen, flags);
}

size_t kb_pktinfo_space(void) {
    size_t a = CMSG_SPACE(sizeof(struct in_pktinfo));
    size_t b = CMSG_SPACE(sizeof(struct in6_pktinfo));
    return a > b ? a : b;
}

int kb_cmsg_get_pktinfo(const struct msghdr *msg, uint8_t addr[16], int *ifindex) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c != NULL;
         c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            memcpy(addr, &info.ipi_addr, 4);
            *ifindex = info.ipi_ifindex;
            return 4;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            memcpy(addr, &info.ipi6_addr, 16);
            *ifindex = (int)info.ipi6_ifindex;
            return 16;
        }
    }
    return 0;
}

size_t kb_cmsg_set_pktinfo(struct msghdr *msg, void *ctrl, int family, const uint8_t *addr, int ifindex) {
    msg->msg_control = ctrl;
    msg->msg_controllen = kb_pktinfo_space();
    memset(ctrl, 0, msg->msg_controllen);
    struct cmsghdr *c = CMSG_FIRSTHDR(msg);
    if (family == AF_INET) {
        struct in_pktinfo info;
        memset(&info, 0, sizeof info);
        memcpy(&info.ipi_spec_dst, addr, 4);
        info.ipi_ifindex = ifindex;
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof info);
        memcpy(CMSG_DATA(c), &info, sizeof info);
        msg->msg_controllen = CMSG_SPACE(sizeof info);
    } else {
        struct in6_pktinfo info;
        memset(&info, 0, sizeof info);
        memcpy(&info.ipi6_addr, addr, 16);
        info.ipi6_ifindex = (unsigned)ifindex;
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof info);
        memcpy(CMSG_DATA(c), &info, sizeof info);
        msg->msg_controllen = CMSG_SPACE(sizeof info);
    }
    return msg->msg_controllen;
}

int kb_opt_ipv6_recvpktinfo(void) { return IPV6_RECVPKTINFO; }
int kb_opt_ip_pktinfo(void) { return IP_PKTINFO; }
int kb_opt_so_reuseport(void) { return SO_REUSEPORT; }

ssize_t kb_getrandom(void *buf, size_t len) { return getrandom(buf, len, 0); }

int kb_accept4(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int kb_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int kb_enable_recverr(int fd, int family) {
    int on = 1;
    if (family == AF_INET6) return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on);
    return setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on);
}

int kb_recv_error(int fd, void *payload, size_t cap, size_t *payload_len,
                  struct sockaddr_storage *dest, socklen_t *dest_len, int *err, int *from_icmp) {
    /* Room for one sock_extended_err plus the offender's address, for either family. */
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(struct sock_extended_err) + sizeof(struct sockaddr_in6))]; } ctrl;
    struct iovec iov = { payload, cap };
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = dest;
    msg.msg_namelen = sizeof *dest;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.buf;
    msg.msg_controllen = sizeof ctrl.buf;
    ssize_t n;
    do { n = recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT); } while (n < 0 && errno == EINTR);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    *payload_len = (size_t)n;
    *dest_len = msg.msg_namelen;
    *err = 0;
    *from_icmp = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR)
            || (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR)) {
            struct sock_extended_err ee;
            memcpy(&ee, CMSG_DATA(c), sizeof ee);
            *err = (int)ee.ee_errno;
            *from_icmp = ee.ee_origin == SO_EE_ORIGIN_ICMP || ee.ee_origin == SO_EE_ORIGIN_ICMP6;
        }
    }
    return 1;
}
