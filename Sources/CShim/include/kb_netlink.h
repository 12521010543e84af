/*
 * rtnetlink pieces Swift's Glibc module does not export: <linux/netlink.h> and
 * <linux/rtnetlink.h> are kernel headers, not glibc's. The route helper keeps its
 * message builders and reply parser in pure Swift (so they can be fuzzed and tested
 * byte-for-byte); this header only gives it the socket address layout and a way for a
 * unit test to check every Swift-side constant against the kernel headers.
 */
#ifndef KUBEBRIDGE_KB_NETLINK_H
#define KUBEBRIDGE_KB_NETLINK_H

#include <stdint.h>
#include <sys/socket.h>

/* Same layout as struct sockaddr_nl (static asserts in kb_netlink.c). */
struct kb_sockaddr_nl {
    sa_family_t nl_family;
    unsigned short nl_pad;
    uint32_t nl_pid;
    uint32_t nl_groups;
};

/*
 * The value of a netlink/rtnetlink constant by its C name ("RTM_NEWROUTE", "RTA_DST",
 * "NLM_F_ACK", ...), or -1 for a name this shim does not know. Used by tests only.
 */
long kb_netlink_constant(const char *name);

#endif
