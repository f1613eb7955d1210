/*
 * Autoconfiguration and power management structures (<sys/device.h>,
 * <sys/pmf.h>).
 *
 * `config(1)` would compile the kernel's device table into `cfdata[]`; here
 * the boot path hands the same facts to config_cfdata_attach() as a list of
 * CfDesc (driver name, parent name, match/attach symbols, softc size) and
 * they are copied into guest memory, where config_found() looks them up.
 * Every function a device table names is a kernel symbol, so the tree of
 * attached devices is plain data.
 *
 *   struct cfdata {
 *       struct tailq_entry cf_list;     // kg_cfdata
 *       char   cf_name[16];             // driver, e.g. "xencons"
 *       char   cf_atname[16];           // parent driver it attaches at; "" = root
 *       int  (*cf_match)(device_t parent, cfdata_t, void *aux);    // 0 = no
 *       void (*cf_attach)(device_t parent, device_t self, void *aux);
 *       uint32_t cf_devsize;            // softc bytes (0: none)
 *       uint32_t cf_flags;
 *   };
 *
 *   struct device {
 *       struct tailq_entry dv_list;     // alldevs, in attach order
 *       char     dv_xname[16];          // "xencons0"
 *       int32_t  dv_unit;
 *       uint32_t dv_depth;              // 0 for a root
 *       uint32_t dv_flags;              // DVF_*
 *       uint32_t dv_order;              // attach sequence number
 *       device_t dv_parent;
 *       cfdata_t dv_cfdata;
 *       void    *dv_private;            // the softc (kmem, zeroed), or NULL
 *       bool   (*dv_driver_suspend)(device_t);  // pmf(9) handlers; 0 = nothing to do
 *       bool   (*dv_driver_resume)(device_t);
 *       bool   (*dv_driver_shutdown)(device_t, int howto);
 *   };
 */
import { struct, record, array, u32, i32, u64, char } from '../../hypervisor/public/layout.js';
import { tailq_entry } from './queue.js';

/** Longest device name ("xbd12"), NUL included. */
export const DEVNAMELEN = 16;

export const cfdata = struct('struct cfdata', {
  cf_list: record(tailq_entry),
  cf_name: array(char, DEVNAMELEN),
  cf_atname: array(char, DEVNAMELEN),
  cf_match: u64,
  cf_attach: u64,
  cf_devsize: u32,
  cf_flags: u32,
});

export const device = struct('struct device', {
  dv_list: record(tailq_entry),
  dv_xname: array(char, DEVNAMELEN),
  dv_unit: i32,
  dv_depth: u32,
  dv_flags: u32,
  dv_order: u32,
  dv_parent: u64,
  dv_cfdata: u64,
  dv_private: u64,
  dv_driver_suspend: u64,
  dv_driver_resume: u64,
  dv_driver_shutdown: u64,
});

/* dv_flags (NetBSD's values) */
/** Attached and not detached. */
export const DVF_ACTIVE = 0x0001;
/** dv_private was allocated by autoconf (freed with the device). */
export const DVF_PRIV_ALLOC = 0x0002;
/** pmf_device_register() was called: the device takes part in suspend. */
export const DVF_POWER_HANDLERS = 0x0004;
export const DVF_CLASS_SUSPENDED = 0x0008;
/** Its driver suspend handler ran and it has not been resumed. */
export const DVF_DRIVER_SUSPENDED = 0x0010;
export const DVF_BUS_SUSPENDED = 0x0020;

/* Return values of a config_found() print function. */
export const QUIET = 0;
/** "not configured": no driver matched. */
export const UNCONF = 1;
/** "not supported". */
export const UNSUPP = 2;

/**
 * One line of the kernel's device table, as the boot path supplies it.
 * Symbols are kernel symbol names (resolved when the table is attached).
 */
export interface CfDesc {
  /** Driver name: the device is called name + unit. */
  readonly name: string;
  /** Name of the parent's driver, or '' for a root device. */
  readonly atname: string;
  /** `match(cpu, parent, cf, aux)`: priority, 0 for "not mine". */
  readonly match: string;
  /** `attach(cpu, parent, self, aux)`: prints the rest of the attach line. */
  readonly attach: string;
  /** Bytes of softc to allocate (zeroed) for each instance. */
  readonly devsize: number;
}
