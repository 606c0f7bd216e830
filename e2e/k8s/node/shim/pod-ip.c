/*
 * periscope-node's pod-ip shim (LD_PRELOAD): a pod's processes run on the host network, each
 * pod with a loopback address of its own (PERISCOPE_NODE_POD_IP, e.g. 127.1.0.7; see
 * ../podaddr.go). A bind() to the wildcard address becomes a bind to the pod's address:
 *   - AF_INET 0.0.0.0            -> the pod's address;
 *   - AF_INET6 :: (dual-stack)   -> ::ffff:<the pod's address> (IPv4 only: there is no IPv6
 *                                   loopback alias per pod); an IPV6_V6ONLY socket is left alone.
 * Every other bind (127.0.0.1, a port-0 client bind to a specific address, Unix sockets) is
 * passed through unchanged, as is everything when the variable is unset or not an IPv4 address.
 * Dynamically linked programs only (glibc resolves bind() through the shim); static binaries,
 * Go programs among them, make the system call themselves and are not affected.
 *
 * Built by e2e/k8s/build.sh next to periscope-node (gcc, flags SHIM_CFLAGS of build-inputs.env);
 * uses only symbols every glibc has (getenv, inet_pton, getsockopt, syscall).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct in_addr pod_addr;
static int have_pod_addr;

__attribute__((constructor)) static void pod_ip_init(void) {
  const char *v = getenv("PERISCOPE_NODE_POD_IP");
  if (v != NULL && inet_pton(AF_INET, v, &pod_addr) == 1) have_pod_addr = 1;
}

static int raw_bind(int fd, const struct sockaddr *addr, socklen_t len) {
  return (int)syscall(SYS_bind, fd, addr, len);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  if (!have_pod_addr || addr == NULL) return raw_bind(fd, addr, len);
  if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    struct sockaddr_in in;
    memcpy(&in, addr, sizeof in);
    if (in.sin_addr.s_addr != htonl(INADDR_ANY)) return raw_bind(fd, addr, len);
    in.sin_addr = pod_addr;
    return raw_bind(fd, (const struct sockaddr *)&in, sizeof in);
  }
  if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 in6;
    memcpy(&in6, addr, sizeof in6);
    if (!IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) return raw_bind(fd, addr, len);
    int v6only = 0;
    socklen_t optlen = sizeof v6only;
    if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &optlen) != 0 || v6only)
      return raw_bind(fd, addr, len);
    memset(&in6.sin6_addr, 0, sizeof in6.sin6_addr);
    in6.sin6_addr.s6_addr[10] = 0xff;
    in6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&in6.sin6_addr.s6_addr[12], &pod_addr, 4);
    return raw_bind(fd, (const struct sockaddr *)&in6, sizeof in6);
  }
  return raw_bind(fd, addr, len);
}
