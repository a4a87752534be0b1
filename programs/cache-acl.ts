// What a tenant's Redis ACL user may never run, shared by the rule lists of both targets and by the
// local ACL provider (which applies it after any rule list it is given). Redis key patterns only
// confine commands that name keys: everything else a rule list allows reaches the whole server.

/**
 * Denials applied after a tenant's allow rules. By category: server administration, scripts and
 * functions (a script's keys are not confined to the ones it declares; FUNCTION FLUSH wipes the
 * server's libraries) and pub/sub introspection. By name: the commands without keys that @read or
 * @write let through (DBSIZE, LOLWUT, FUNCTION ...), the ones that enumerate keys whatever the
 * pattern (SCAN, KEYS, RANDOMKEY), and WAIT (replication state). Commands a managed service
 * disables or renames (CONFIG, DEBUG, ...) are left to the categories: naming one in an ElastiCache
 * access string is an error.
 */
export const TENANT_CACHE_DENIALS: readonly string[] = [
  "-@dangerous",
  "-@admin",
  "-@scripting",
  "-@pubsub",
  "-function",
  "-fcall",
  "-fcall_ro",
  "-eval",
  "-evalsha",
  "-eval_ro",
  "-evalsha_ro",
  "-script",
  "-dbsize",
  "-lolwut",
  "-pubsub",
  "-wait",
  "-scan",
  "-keys",
  "-randomkey",
];

/**
 * Connection commands a tenant needs besides keyed ones. SELECT because an application picks the
 * cache database the outputs name; ACLs cannot confine databases, so the key pattern applies in
 * every database and the deprovision purge visits them all.
 */
export const TENANT_CONNECTION_COMMANDS: readonly string[] = ["+ping", "+echo", "+hello", "+select"];
