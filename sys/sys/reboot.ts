/*
 * Boot flags (<sys/reboot.h>): `boothowto` in the kernel globals. The AB_*
 * bits choose what aprint_*() shows on the console.
 */
export const RB_AUTOBOOT = 0;
export const RB_ASKNAME = 0x001;
export const RB_SINGLE = 0x002;
export const RB_HALT = 0x008;
export const RB_DUMP = 0x100;

/** Boot normally. */
export const AB_NORMAL = 0x0000_0000;
/** Boot quietly: aprint_normal() goes to the log only. */
export const AB_QUIET = 0x0001_0000;
/** Boot verbosely: aprint_verbose() reaches the console. */
export const AB_VERBOSE = 0x0002_0000;
/** Boot silently. */
export const AB_SILENT = 0x0004_0000;
/** Boot with debug messages: aprint_debug() prints. */
export const AB_DEBUG = 0x0008_0000;
