// Spectral custom function for aep-151-operations-endpoint.
//
// Given the paths object, reports it when some operation answers 202 (a
// long-running operation, AEP-151) but the operations collection is missing:
// a `get` on `collection` (List) and a `get` on `collection/{param}` (Get).
// Paths are relative to the server URL, so `collection` is `/operations`
// where the public linter hard-codes `/v1/operations`.
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

function isObject(value) {
  return value !== null && typeof value === 'object';
}

function answers202(pathItem) {
  return METHODS.some((method) => {
    const operation = isObject(pathItem) ? pathItem[method] : undefined;
    return isObject(operation) && isObject(operation.responses) && '202' in operation.responses;
  });
}

function hasGet(pathItem) {
  return isObject(pathItem) && isObject(pathItem.get);
}

// `/operations/{operation_id}` for collection `/operations`: one path parameter.
function isItemOf(collection, key) {
  return key.startsWith(`${collection}/{`) && /^\{[^/{}]+\}$/.test(key.slice(collection.length + 1));
}

export default function operationsEndpoint(paths, options, context) {
  if (!isObject(paths)) return [];
  const { collection } = options;
  const keys = Object.keys(paths);
  const longRunning = keys.find((key) => answers202(paths[key]));
  if (longRunning === undefined) return [];
  const missing = [];
  if (!hasGet(paths[collection])) missing.push(`GET ${collection}`);
  if (!keys.some((key) => isItemOf(collection, key) && hasGet(paths[key]))) {
    missing.push(`GET ${collection}/{operation_id}`);
  }
  if (missing.length === 0) return [];
  return [
    {
      message: `${longRunning} has a long-running operation (it answers 202), so the spec must define ${missing.join(' and ')} (AEP-151).`,
      path: [...context.path],
    },
  ];
}
