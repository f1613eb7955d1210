/*
 * The network error numbers of NetBSD's <sys/errno.h> that sys/sys/errno.ts
 * does not (yet) list. Same values as NetBSD; kernel errnos, never Xen's.
 */
export const EDESTADDRREQ = 39;
export const EMSGSIZE = 40;
export const EADDRINUSE = 48;
export const EADDRNOTAVAIL = 49;
export const ENETDOWN = 50;
export const ENETUNREACH = 51;
export const ENOBUFS = 55;
export const EHOSTUNREACH = 65;
