/*
 * The kernel's own error numbers (NetBSD <sys/errno.h>). These differ from
 * the Xen errnos a hypercall returns (hypervisor/public/errno.ts, Linux
 * values): EAGAIN is 35 here and 11 there, so never mix them.
 */
export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const E2BIG = 7;
export const EBADF = 9;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENOSPC = 28;
export const EAGAIN = 35;
/** tsleep()/kpause() ran out of time. */
export const EWOULDBLOCK = EAGAIN;
export const EOPNOTSUPP = 45;
export const ETIMEDOUT = 60;
