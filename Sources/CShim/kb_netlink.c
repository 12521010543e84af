#include "kb_netlink.h"
#include <string.h>
#include <stddef.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

_Static_assert(sizeof(struct kb_sockaddr_nl) == sizeof(struct sockaddr_nl), "sockaddr_nl layout");
_Static_assert(offsetof(struct kb_sockaddr_nl, nl_pid) == offsetof(struct sockaddr_nl, nl_pid), "sockaddr_nl layout");
_Static_assert(offsetof(struct kb_sockaddr_nl, nl_groups) == offsetof(struct sockaddr_nl, nl_groups), "sockaddr_nl layout");

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

#define KB_CONST(n) { #n, (long)(n) }
static const struct { const char *name; long value; } kb_constants[] = {
    KB_CONST(NETLINK_ROUTE), KB_CONST(SOL_NETLINK), KB_CONST(NETLINK_EXT_ACK), KB_CONST(NETLINK_CAP_ACK),
    KB_CONST(NETLINK_GET_STRICT_CHK), KB_CONST(NETLINK_ADD_MEMBERSHIP),
    KB_CONST(NLMSG_NOOP), KB_CONST(NLMSG_ERROR), KB_CONST(NLMSG_DONE), KB_CONST(NLMSG_OVERRUN),
    KB_CONST(NLM_F_REQUEST), KB_CONST(NLM_F_MULTI), KB_CONST(NLM_F_ACK), KB_CONST(NLM_F_DUMP_INTR),
    KB_CONST(NLM_F_DUMP), KB_CONST(NLM_F_REPLACE), KB_CONST(NLM_F_EXCL), KB_CONST(NLM_F_CREATE),
    KB_CONST(NLM_F_CAPPED), KB_CONST(NLM_F_ACK_TLVS), KB_CONST(NLMSGERR_ATTR_MSG), KB_CONST(NLMSGERR_ATTR_OFFS),
    KB_CONST(RTM_NEWROUTE), KB_CONST(RTM_DELROUTE), KB_CONST(RTM_GETROUTE),
    KB_CONST(RTA_DST), KB_CONST(RTA_SRC), KB_CONST(RTA_OIF), KB_CONST(RTA_GATEWAY), KB_CONST(RTA_PRIORITY),
    KB_CONST(RTA_PREFSRC), KB_CONST(RTA_MULTIPATH), KB_CONST(RTA_TABLE), KB_CONST(RTA_VIA),
    KB_CONST(RTN_UNSPEC), KB_CONST(RTN_UNICAST), KB_CONST(RTN_LOCAL), KB_CONST(RTN_BLACKHOLE),
    KB_CONST(RT_SCOPE_UNIVERSE), KB_CONST(RT_SCOPE_LINK), KB_CONST(RT_SCOPE_HOST), KB_CONST(RT_SCOPE_NOWHERE),
    KB_CONST(RT_TABLE_UNSPEC), KB_CONST(RT_TABLE_MAIN), KB_CONST(RT_TABLE_LOCAL),
    KB_CONST(RTPROT_KERNEL), KB_CONST(RTPROT_BOOT), KB_CONST(RTPROT_STATIC),
    KB_CONST(RTMGRP_IPV4_ROUTE), KB_CONST(RTMGRP_IPV6_ROUTE),
    { "sizeof(struct nlmsghdr)", (long)sizeof(struct nlmsghdr) },
    { "sizeof(struct rtmsg)", (long)sizeof(struct rtmsg) },
    { "sizeof(struct nlmsgerr)", (long)sizeof(struct nlmsgerr) },
    { "sizeof(struct rtattr)", (long)sizeof(struct rtattr) },
};

long kb_netlink_constant(const char *name) {
    for (size_t i = 0; i < sizeof kb_constants / sizeof kb_constants[0]; i++) {
        if (strcmp(kb_constants[i].name, name) == 0) return kb_constants[i].value;
    }
    return -1;
}
