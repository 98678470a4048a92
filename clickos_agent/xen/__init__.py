"""The Xen world's external systems, each behind one small interface with a real
implementation and a stateful model: libvirt (libvirt_iface), xenstore, VALE."""
