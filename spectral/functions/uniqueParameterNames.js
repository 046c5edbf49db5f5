// Spectral custom function for aep-140-parameter-names-unique.
//
// Given a path item, reports every operation whose effective parameters
// (its own, plus the path item's that it does not override by name and
// location) contain two names that are equal ignoring case.
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

function asList(params) {
  return Array.isArray(params) ? params.filter((p) => p && typeof p.name === 'string') : [];
}

export default function uniqueParameterNames(pathItem, _options, context) {
  if (pathItem === null || typeof pathItem !== 'object') return [];
  const shared = asList(pathItem.parameters);
  const results = [];
  for (const method of METHODS) {
    const operation = pathItem[method];
    if (operation === null || typeof operation !== 'object') continue;
    const own = asList(operation.parameters);
    const overridden = new Set(own.map((p) => `${p.in}:${p.name}`));
    const effective = own.concat(shared.filter((p) => !overridden.has(`${p.in}:${p.name}`)));
    const seen = new Map();
    for (const param of effective) {
      const key = param.name.toLowerCase();
      if (seen.has(key)) {
        results.push({
          message: `Parameter names "${seen.get(key)}" and "${param.name}" collide (names must be unique ignoring case).`,
          path: [...context.path, method],
        });
      } else {
        seen.set(key, param.name);
      }
    }
  }
  return results;
}
